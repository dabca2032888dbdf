-- berth: claim queued requests for one scheduler replica, without blocking.
--
-- KEYS: 1 intake stream `P:{q}:intake`.
-- ARGV: 1 record key prefix `P:{q}:c:`, 2 consumer, 3 claim visibility in ms, 4 max (>= 1),
--       5 reclaim: '1' to take over stale claims first, '0' not to look this time.
-- Reply: {claims, bad}: claims = {{entry, id, request JSON ('' if missing), redelivered
--        ('1' for entries claimed before, else '0')}, ...}, first (with reclaim '1')
--        entries reclaimed from consumers that did not settle them within the visibility
--        timeout (XAUTOCLAIM), then new ones (XREADGROUP), at most max; bad = {{entry, id,
--        problem}, ...} entries dropped because they cannot be claimed.
-- Guarantee: an entry whose record is missing or no longer pending is acknowledged and
--   deleted, not claimed. Creates the group `engine` if missing.
-- Record keys are derived here as prefix .. id, not declared in KEYS: this is allowed only
--   because check_prefix verifies they share the intake key's hash tag, so its slot.

local intake, prefix, consumer = KEYS[1], ARGV[1], ARGV[2]
local idle, max = uint(ARGV[3]), uint(ARGV[4])
local reclaim = ARGV[5]
if #ARGV ~= 5 or consumer == '' or idle == nil or max == nil or max < 1
  or (reclaim ~= '1' and reclaim ~= '0') then
  return invalid('claim arguments')
end
local prefix_err = check_prefix(intake, prefix)
if prefix_err then
  return prefix_err
end
local group_err = ensure_group(intake, 'engine')
if group_err then
  return group_err
end

local claims, bad = {}, {}
if reclaim == '1' then
  local reclaimed = redis.call('XAUTOCLAIM', intake, 'engine', consumer, ARGV[3], '0-0',
    'COUNT', ARGV[4])
  for _, entry in ipairs(reclaimed[2]) do
    if entry and entry[2] then
      screen(intake, prefix, entry[1], entry[2], claims, bad, '1')
    end
  end
end
-- New entries; stale ones are dropped, so read again (a bounded number of times) to fill up.
for _ = 1, 10 do
  if #claims >= max then
    break
  end
  local fresh = redis.call('XREADGROUP', 'GROUP', 'engine', consumer, 'COUNT',
    str(max - #claims), 'STREAMS', intake, '>')
  if not fresh then
    break
  end
  for _, entry in ipairs(fresh[1][2]) do
    screen(intake, prefix, entry[1], entry[2], claims, bad, '0')
  end
end
return { claims, bad }
