-- berth: record that a worker is alive.
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`.
-- ARGV: 1 now, ms since the epoch, 2 the agent's epoch ('' = not fenced), 3 (optional) the
--   images the worker holds, one reference per line (checked by the caller), '' for none.
-- Reply: {'unknown'} | {'stale', current epoch} | {'ok'}.
-- Guarantee: atomic; fenced: nothing is written under a stale epoch. Sets heartbeat_ms
--   and, with ARGV 3, the images field in the same step; the version is not bumped
--   (capacity and status are unchanged; the images are a preference, not a booking).

if (#ARGV ~= 2 and #ARGV ~= 3) or uint(ARGV[1]) == nil then
  return invalid('heartbeat time ' .. tostring(ARGV[1]))
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'unknown' }
end
local stale = stale_epoch(KEYS[1], ARGV[2])
if stale then
  return stale
end
redis.call('HSET', KEYS[1], 'heartbeat_ms', ARGV[1])
if #ARGV == 3 then
  redis.call('HSET', KEYS[1], 'images', ARGV[3])
end
return { 'ok' }
