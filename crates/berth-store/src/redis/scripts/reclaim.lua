-- berth: give back the container of a dead worker (mirrors crate::lifecycle::reclaim).
--
-- KEYS: 1 record hash `P:{q}:c:ID`, 2 intake stream `P:{q}:intake`.
-- ARGV: 1 container id, 2 worker, 3 attempt, 4 reason, 5 now (ms since the epoch).
-- Reply: 'requeued' | 'lost' | 'released' (the record is not held by that worker and
--        attempt: nothing changed here).
-- Guarantee: atomic. A pending record gets the attempt added to `revoked`, so a settlement
--   of that attempt arriving later is superseded (never scheduled on a released
--   reservation). A scheduled record held by the worker and attempt goes back to pending
--   (worker, attempt and scheduled time cleared, the reason recorded) and is appended to the
--   intake; a running one becomes lost with the reason; either gives the container's
--   charge to its tenant back (a requeued one is charged again when it is held or placed).
--   The caller then releases the worker's reservation (another slot); repeating both
--   changes nothing more.

local key, intake = KEYS[1], KEYS[2]
local id, worker, attempt, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = uint(ARGV[5])
if #ARGV ~= 5 or id == '' or worker == '' or attempt == '' or now == nil then
  return invalid('reclaim arguments')
end
if redis.call('EXISTS', key) == 0 then
  return 'released'
end
local record, err = read_record(key)
if err then
  return err
end
if record.state == 'pending' then
  -- The reservation is being given back before its settlement arrived: fence it off.
  local list = redis.call('HGET', key, 'revoked')
  if not revoked(list, attempt) then
    redis.call('HSET', key, 'revoked', ((list and list ~= '') and (list .. ' ') or '') .. attempt)
  end
  return 'released'
end
if not holds(record, worker, attempt) then
  return 'released'
end
if record.state == 'scheduled' then
  redis.call('HSET', key, 'state', 'pending', 'reason', reason)
  redis.call('HDEL', key, 'worker', 'attempt', 'scheduled_ms')
  redis.call('XADD', intake, '*', 'id', id)
  uncharge(key, id)
  return 'requeued'
elseif record.state == 'running' then
  finish(key, record, 'lost', reason, now)
  return 'lost'
end
return 'released'
