-- berth: give back the container of a dead worker (mirrors crate::lifecycle::reclaim and
-- crate::lifecycle::end_or_retry).
--
-- KEYS: 1 record hash `P:{q}:c:ID`, 2 intake stream `P:{q}:intake`.
-- ARGV: 1 container id, 2 worker, 3 attempt, 4 reason, 5 now (ms since the epoch), 6 how a
--       running container ends: 'lost' (its worker died) or 'preempted' (it was stopped
--       for a request of higher priority: crate::lifecycle::preempted).
-- Reply: 'requeued' | 'retried' | 'lost' | 'preempted' | 'released' (the record is not held
--        by that worker and attempt: nothing changed here).
-- Guarantee: atomic. A pending record gets the attempt added to `revoked`, so a settlement
--   of that attempt arriving later is superseded (never scheduled on a released
--   reservation). A scheduled or pulling record (it never started) held by the worker and
--   attempt goes back to pending
--   (worker, attempt and scheduled time cleared, the reason recorded, the attempt revoked
--   likewise) and is appended to the intake. A running one whose request allows more retries (`max_retries` in the request
--   JSON above the record's `retries`) and whose cancellation was not asked for goes back to
--   pending the same way, its start time cleared too, its attempt revoked, `retries` counted
--   up and the reason `<end>: <reason>; retry N of M`; otherwise it becomes `end` with the
--   reason (`<reason>; all M retries used` when it had retries). Each of them gives the
--   container's charge to its tenant back (a requeued one is charged again when it is held
--   or placed). The caller then releases the worker's reservation (another slot); repeating
--   both changes nothing more.

local key, intake = KEYS[1], KEYS[2]
local id, worker, attempt, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, ending = uint(ARGV[5]), ARGV[6]
if #ARGV ~= 6 or id == '' or worker == '' or attempt == '' or now == nil
    or (ending ~= 'lost' and ending ~= 'preempted') then
  return invalid('reclaim arguments')
end
if redis.call('EXISTS', key) == 0 then
  return 'released'
end
local record, err = read_record(key)
if err then
  return err
end

-- Adds `a` to the record's revoked attempts, once.
local function revoke(a)
  local list = redis.call('HGET', key, 'revoked')
  if not revoked(list, a) then
    redis.call('HSET', key, 'revoked', ((list and list ~= '') and (list .. ' ') or '') .. a)
  end
end

-- Back to pending, unplaced, and into the intake; the charge is given back.
local function requeue(why)
  redis.call('HSET', key, 'state', 'pending', 'reason', why)
  redis.call('HDEL', key, 'worker', 'attempt', 'scheduled_ms')
  redis.call('XADD', intake, '*', 'id', id)
  uncharge(key, id)
end

-- The request's max_retries (absent: 0) and the record's retries, or nil and an error.
local function retry_counts()
  local r = redis.call('HMGET', key, 'request', 'retries')
  local ok, request = pcall(cjson.decode, r[1] or '')
  if not ok or type(request) ~= 'table' then
    return nil, nil, corrupt(key, 'request', 'is not a request')
  end
  local max = request.max_retries or 0
  if type(max) ~= 'number' or max < 0 or max ~= math.floor(max) then
    return nil, nil, corrupt(key, 'request', 'has a max_retries that is not a count')
  end
  local retries = uint(r[2] or '0')
  if retries == nil then
    return nil, nil, corrupt(key, 'retries', 'is not a count: ' .. r[2])
  end
  return max, retries, nil
end

if record.state == 'pending' then
  -- The reservation is being given back before its settlement arrived: fence it off.
  revoke(attempt)
  return 'released'
end
if not holds(record, worker, attempt) then
  return 'released'
end
if ending == 'preempted' and (record.state == 'running' or record.state == 'pulling') then
  -- When it was preempted: for a while it may not preempt others (lifecycle::was_preempted).
  redis.call('HSET', key, 'preempted_ms', str(now))
end
if record.state == 'scheduled' or record.state == 'pulling' then
  -- Revoked, so a settlement of that attempt repeated late cannot schedule it again.
  revoke(attempt)
  requeue(reason)
  return 'requeued'
elseif record.state == 'running' then
  local max, retries, bad = retry_counts()
  if bad then
    return bad
  end
  if retries < max and redis.call('HGET', key, 'cancel') ~= '1' then
    retries = retries + 1
    revoke(attempt)
    redis.call('HSET', key, 'retries', str(retries))
    redis.call('HDEL', key, 'started_ms')
    requeue(ending .. ': ' .. reason .. '; retry ' .. str(retries) .. ' of ' .. str(max))
    return 'retried'
  end
  if max > 0 then
    reason = reason .. '; all ' .. str(max) .. (max == 1 and ' retry' or ' retries') .. ' used'
  end
  finish(key, record, ending, reason, now)
  return ending
end
return 'released'
