-- berth: set a worker's status.
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`.
-- ARGV: 1 status: available, pending, draining, disabled or lost.
-- Reply: {'unknown'} | {'ok', worker} (the worker hash after the change).
-- Guarantee: atomic; sets the status and bumps the version. A move into `lost` also bumps
--   the epoch, so every later call of the presumed-dead agent is fenced off.

local statuses = { available = true, pending = true, draining = true, disabled = true,
  lost = true }
if #ARGV ~= 1 or not statuses[ARGV[1]] then
  return invalid('status ' .. tostring(ARGV[1]))
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'unknown' }
end
local stored = redis.call('HGET', KEYS[1], 'version')
local version = uint(stored)
if version == nil then
  return corrupt(KEYS[1], 'version', 'is not a non-negative integer: ' .. tostring(stored))
end
if ARGV[1] == 'lost' and redis.call('HGET', KEYS[1], 'status') ~= 'lost' then
  local epoch = uint(redis.call('HGET', KEYS[1], 'epoch') or '0')
  if epoch == nil then
    return corrupt(KEYS[1], 'epoch', 'is not a non-negative integer')
  end
  redis.call('HSET', KEYS[1], 'epoch', str(epoch + 1))
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'version', str(version + 1))
return { 'ok', redis.call('HGETALL', KEYS[1]) }
