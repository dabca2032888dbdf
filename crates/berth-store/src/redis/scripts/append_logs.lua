-- berth: append output lines to a container's log, keeping the last ones.
--
-- KEYS: 1 the kept lines `P:{q}:logs:ID` (LIST), 2 the count of lines ever appended
--   `P:{q}:logn:ID` (STRING).
-- ARGV: 1 keep (at least 1 is kept), 2.. the lines.
-- Reply: the count of lines ever appended, after the call.
-- Guarantee: atomic: the lines and the count move together, so a line's position (the count
--   before it) never changes. A log written before the count existed starts counting at its
--   length.

local list, count = KEYS[1], KEYS[2]
local keep = uint(ARGV[1])
if #ARGV < 1 or keep == nil then
  return invalid('append_logs arguments')
end
local total = redis.call('GET', count)
if total then
  total = uint(total)
  if total == nil then
    return corrupt(count, 'count', 'is not a count')
  end
else
  total = redis.call('LLEN', list)
end
local n = #ARGV - 1
if n == 0 then
  return str(total)
end
-- unpack is bounded by Lua's stack: push in chunks.
local chunk = 1000
for i = 2, #ARGV, chunk do
  redis.call('RPUSH', list, unpack(ARGV, i, math.min(i + chunk - 1, #ARGV)))
end
if keep < 1 then
  keep = 1
end
redis.call('LTRIM', list, -keep, -1)
total = total + n
redis.call('SET', count, str(total))
return str(total)
