-- berth: record that a worker is alive.
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`.
-- ARGV: 1 now, ms since the epoch, 2 the agent's epoch ('' = not fenced).
-- Reply: {'unknown'} | {'stale', current epoch} | {'ok'}.
-- Guarantee: atomic; fenced: nothing is written under a stale epoch. Sets heartbeat_ms
--   only; the version is not bumped (capacity and status are unchanged).

if #ARGV ~= 2 or uint(ARGV[1]) == nil then
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
return { 'ok' }
