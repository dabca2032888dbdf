-- berth: remove a worker that owns nothing.
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`, 2 owned hash, 3 assignment stream, 4 lock.
-- ARGV: none.
-- Reply: 'removed' | 'unknown' | {'still_owns', n}.
-- Guarantee: atomic: a worker that owns containers is never removed (its capacity would be
--   forgotten); otherwise its four keys are deleted. The caller then removes the id from the
--   worker index (another slot); a stale index entry without a hash is skipped by readers.

if #ARGV ~= 0 then
  return invalid('deregister takes no arguments')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'unknown'
end
local owned = redis.call('HLEN', KEYS[2])
if owned > 0 then
  return { 'still_owns', owned }
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return 'removed'
