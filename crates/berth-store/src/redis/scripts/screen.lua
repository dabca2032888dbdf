-- berth: screen intake entries that a blocking XREADGROUP just claimed.
--
-- KEYS: 1 intake stream `P:{q}:intake`.
-- ARGV: 1 record key prefix `P:{q}:c:`, then the claimed entry ids.
-- Reply: {claims, bad} as for claim.lua, in the order given.
-- Guarantee: as claim.lua: entries whose record is missing or no longer pending, and
--   entries already deleted, are acknowledged and dropped.
-- Record keys are derived as prefix .. id (same slot as the intake; see claim.lua).

local intake, prefix = KEYS[1], ARGV[1]
local prefix_err = check_prefix(intake, prefix)
if prefix_err then
  return prefix_err
end
for i = 2, #ARGV do
  if not is_entry_id(ARGV[i]) then
    return invalid('entry id ' .. ARGV[i])
  end
end
local claims, bad = {}, {}
for i = 2, #ARGV do
  local found = redis.call('XRANGE', intake, ARGV[i], ARGV[i])
  if found[1] then
    screen(intake, prefix, ARGV[i], found[1][2], claims, bad, '0')
  else
    redis.call('XACK', intake, 'engine', ARGV[i])
  end
end
return { claims, bad }
