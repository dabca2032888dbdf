-- berth: commit many groups, each on its own worker, lock-free, in one call (standalone Redis
-- only: the groups' keys lie in many slots). The work per group is commit_group
-- (commit_lib.lua), exactly as commit.lua does it in mode `free`.
--
-- KEYS: per group three: worker hash `P:{w:ID}:worker`, owned hash `P:{w:ID}:owned`,
--       assignment stream `P:{w:ID}:assign`.
-- ARGV: 1 the number g of groups; then per group: the number n of its reservations and
--       n times: container, attempt, cpu, mem, gpu, devices, payload JSON.
-- Reply: one reply per group, in order, each as commit.lua's.
-- Guarantee: each group all or nothing, as commit.lua's; groups are committed in order. An
--   error (malformed arguments, corrupt stored data) is the call's reply: the groups before
--   it stay committed (a retry reports their containers as already owned), none after it is
--   tried. The layout of the arguments is checked before the first group is committed, and
--   each group's arguments before its writes (the client checks them all before sending).

local g = uint(ARGV[1])
if g == nil or #KEYS ~= 3 * g then
  return invalid('commit_many takes three keys per group')
end
-- Where each group's arguments start, checked all before anything is written.
local bases, at = {}, 2
for i = 1, g do
  local n = uint(ARGV[at])
  if n == nil then
    return invalid('group ' .. i .. ': reservation count ' .. tostring(ARGV[at]))
  end
  bases[i] = at
  at = at + 1 + 7 * n
end
if at ~= #ARGV + 1 then
  return invalid('commit_many arguments: ' .. #ARGV .. ' for ' .. g .. ' groups')
end
local out = {}
for i = 1, g do
  local keys = { KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i] }
  local reply = commit_group(keys, ARGV, bases[i], 'free', nil, nil)
  if reply.err then
    return reply
  end
  out[i] = reply
end
return out
