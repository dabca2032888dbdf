-- berth: read a container's kept output lines from a position on.
--
-- KEYS: 1 the kept lines `P:{q}:logs:ID` (LIST), 2 the count of lines ever appended
--   `P:{q}:logn:ID` (STRING).
-- ARGV: 1 after: the position to read from (a line's position is the count of lines
--   appended before it).
-- Reply: {first, lines}: the position of the first line returned (`after`, or later when
--   the lines in between are no longer kept, or the end when `after` is past it) and the
--   kept lines from there on.
-- Guarantee: atomic: the lines and their positions are read together.

local list, count = KEYS[1], KEYS[2]
local after = uint(ARGV[1])
if #ARGV ~= 1 or after == nil then
  return invalid('read_logs arguments')
end
local len = redis.call('LLEN', list)
local total = redis.call('GET', count)
if total then
  total = uint(total)
  if total == nil then
    return corrupt(count, 'count', 'is not a count')
  end
else
  total = len
end
if total < len then
  total = len
end
local start = total - len
local first = after
if first < start then
  first = start
end
if first > total then
  first = total
end
if first == total then
  return { str(first), {} }
end
return { str(first), redis.call('LRANGE', list, first - start, -1) }
