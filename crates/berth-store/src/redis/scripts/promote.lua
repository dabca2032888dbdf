-- berth: move due backlog entries back to the intake.
--
-- KEYS: 1 intake stream `P:{q}:intake`, 2 backlog zset `P:{q}:backlog`.
-- ARGV: 1 now, ms since the epoch; 2 max.
-- Reply: the number of entries moved.
-- Guarantee: atomic; the earliest due first (score, then id): each is appended to the
--   intake (field id) and removed from the backlog.

local intake, backlog = KEYS[1], KEYS[2]
local now, max = uint(ARGV[1]), uint(ARGV[2])
if #ARGV ~= 2 or now == nil or max == nil then
  return invalid('promote arguments')
end
if max == 0 then
  return 0
end
local t = redis.call('TYPE', intake).ok
if t ~= 'stream' and t ~= 'none' then
  return corrupt(intake, 'type', 'is ' .. t .. ', not a stream')
end
local due = redis.call('ZRANGEBYSCORE', backlog, '-inf', ARGV[1], 'LIMIT', '0', ARGV[2])
for _, id in ipairs(due) do
  redis.call('XADD', intake, '*', 'id', id)
  redis.call('ZREM', backlog, id)
end
return #due
