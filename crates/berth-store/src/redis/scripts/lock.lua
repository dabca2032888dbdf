-- berth: try once to take a worker's lock (the lock-based commit path).
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`, 2 lock `P:{w:ID}:lock`.
-- ARGV: 1 a random token, 2 time to live in ms (at least 1).
-- Reply: {'unknown'} | {'held'} (someone else holds it) | {'ok'}.
-- Guarantee: SET NX PX: the lock expires by itself after the time to live.

local ttl = uint(ARGV[2])
if #ARGV ~= 2 or ARGV[1] == '' or ttl == nil or ttl < 1 then
  return invalid('lock token or time to live')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'unknown' }
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return { 'ok' }
end
return { 'held' }
