-- berth: record that a worker is alive.
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`.
-- ARGV: 1 now, ms since the epoch.
-- Reply: {'unknown'} | {'ok'}.
-- Guarantee: sets heartbeat_ms only; the version is not bumped (capacity and status are
--   unchanged).

if #ARGV ~= 1 or uint(ARGV[1]) == nil then
  return invalid('heartbeat time ' .. tostring(ARGV[1]))
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'unknown' }
end
redis.call('HSET', KEYS[1], 'heartbeat_ms', ARGV[1])
return { 'ok' }
