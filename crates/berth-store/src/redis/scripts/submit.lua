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
for i = 1, n do
  local t = redis.call('TYPE', KEYS[2 + i]).ok
  if t ~= 'none' and t ~= 'hash' then
    return corrupt(KEYS[2 + i], 'type', 'is ' .. t .. ', not a hash')
  end
end
local group_err = ensure_group(intake, 'engine')
if group_err then
  return group_err
end
local out = {}
for i = 1, n do
  local key, id = KEYS[2 + i], ARGV[2 * i - 1]
  if redis.call('EXISTS', key) == 1 then
    out[i] = redis.call('HGET', key, 'state') or ''
  else
    redis.call('HSET', key, 'request', ARGV[2 * i], 'state', 'pending', 'deferrals', '0')
    redis.call('SADD', ids, id)
    redis.call('XADD', intake, '*', 'id', id)
    out[i] = 'accepted'
  end
end
return out
