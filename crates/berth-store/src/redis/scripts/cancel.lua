-- berth: ask for a container to stop (mirrors crate::lifecycle::cancel).
--
-- KEYS: 1 record hash `P:{q}:c:ID`.
-- ARGV: 1 now (ms since the epoch).
-- Reply: {'unknown'} | {'ok', record} (the record hash after the call).
-- Guarantee: atomic. A pending record fails with reason `cancelled` (the engine then drops
--   its intake entry); a scheduled, pulling or running one gets `cancel` = 1 for its worker to act
--   on; an ended one is left as it is. Repeating it changes nothing more.

local key = KEYS[1]
local now = uint(ARGV[1])
if #ARGV ~= 1 or now == nil then
  return invalid('cancel arguments')
end
if redis.call('EXISTS', key) == 0 then
  return { 'unknown' }
end
local record, err = read_record(key)
if err then
  return err
end
if record.state == 'pending' then
  finish(key, record, 'failed', 'cancelled', now)
elseif record.state == 'scheduled' or record.state == 'pulling' or record.state == 'running' then
  redis.call('HSET', key, 'cancel', '1')
end
return { 'ok', redis.call('HGETALL', key) }
