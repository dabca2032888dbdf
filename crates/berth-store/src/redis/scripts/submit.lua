-- berth: accept a batch of container requests.
--
-- KEYS: 1 intake stream `P:{q}:intake`, 2 id set `P:{q}:containers`, then one record hash
--       `P:{q}:c:ID` per request.
-- ARGV: per request: container id, request JSON.
-- Reply: one string per request: 'accepted', or the state of the existing record.
-- Guarantee: atomic for the whole batch. A new request is recorded as pending (fields
--   request, state, deferrals), added to the id set, and appended to the intake (field id);
--   a known id changes nothing (a duplicate). Creates the consumer group `engine` if missing.

local intake, ids = KEYS[1], KEYS[2]
local n = #KEYS - 2
if n < 0 or #ARGV ~= 2 * n then
  return invalid('submit takes one record key and two arguments per request')
end
for i = 1, n do
  if ARGV[2 * i - 1] == '' or ARGV[2 * i] == '' then
    return invalid('request ' .. i .. ' has an empty id or body')
  end
end
for key, want in pairs({ [intake] = 'stream', [ids] = 'set' }) do
  local t = redis.call('TYPE', key).ok
  if t ~= 'none' and t ~= want then
    return corrupt(key, 'type', 'is ' .. t .. ', not a ' .. want)
  end
end
-- Which records exist, and the state of those that do. Only an existing key can have
-- another type: its HGET fails then, before anything is written.
local known = {}
for i = 1, n do
  local key = KEYS[2 + i]
  if redis.call('EXISTS', key) == 1 then
    local state = redis.pcall('HGET', key, 'state')
    if type(state) == 'table' and state.err then
      return corrupt(key, 'type', 'is not a hash: ' .. state.err)
    end
    known[key] = state or ''
  end
end
local group_err = ensure_group(intake, 'engine')
if group_err then
  return group_err
end
local out, added = {}, {}
for i = 1, n do
  local key, id = KEYS[2 + i], ARGV[2 * i - 1]
  if known[key] then
    out[i] = known[key]
  else
    redis.call('HSET', key, 'request', ARGV[2 * i], 'state', 'pending', 'deferrals', '0')
    redis.call('XADD', intake, '*', 'id', id)
    added[#added + 1] = id
    known[key] = 'pending'
    out[i] = 'accepted'
  end
end
for from = 1, #added, 500 do
  redis.call('SADD', ids, unpack(added, from, math.min(#added, from + 499)))
end
return out
