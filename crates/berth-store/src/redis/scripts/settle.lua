-- berth: settle claimed intake entries.
--
-- KEYS: 1 intake stream `P:{q}:intake`, 2 backlog zset `P:{q}:backlog`, then one record
--       hash `P:{q}:c:ID` per item.
-- ARGV: 1 now, ms since the epoch; then per item seven: intake entry id, container id, kind,
--       a, b, c, d, where for kind `scheduled` a = worker, b = attempt; for `deferred`
--       a = not before (ms), b = reason, c = the pool to grow ('' for none), d = its GPU
--       type ('' for none); for `failed` a = reason. Unused ones are ''.
-- Reply: per item {'done'} or {'superseded', state, worker, attempt} (worker and attempt
--        '' when the record holds none; state 'failed' for a missing record).
-- Guarantee: each item atomically, in order: scheduled moves a pending record to scheduled
--   (already scheduled or running by the same worker and attempt: done); deferred keeps a
--   pending record pending, adds it to the backlog at not-before, counts the deferral and
--   records the reason and the pool it waits for (`demand_pool`, `demand_gpu`); failed ends a pending record as failed. A record that moved on is
--   reported as superseded. The entry is acknowledged and deleted from the intake either way.
--   Arguments and every record are checked before the first write.

local intake, backlog = KEYS[1], KEYS[2]
local now = uint(ARGV[1])
local n = #KEYS - 2
if now == nil or n < 0 or #ARGV ~= 1 + 7 * n then
  return invalid('settle takes one record key and seven arguments per item')
end
local items = {}
for i = 1, n do
  local at = 1 + (i - 1) * 7
  local item = {
    key = KEYS[2 + i], entry = ARGV[at + 1], container = ARGV[at + 2], kind = ARGV[at + 3],
    a = ARGV[at + 4], b = ARGV[at + 5], c = ARGV[at + 6], d = ARGV[at + 7],
  }
  if not is_entry_id(item.entry) or item.container == '' then
    return invalid('item ' .. i .. ': entry id or container')
  end
  if item.kind == 'scheduled' then
    if item.a == '' or item.b == '' then
      return invalid('item ' .. i .. ': worker or attempt')
    end
  elseif item.kind == 'deferred' then
    item.not_before = uint(item.a)
    if item.not_before == nil then
      return invalid('item ' .. i .. ': not before ' .. item.a)
    end
  elseif item.kind ~= 'failed' then
    return invalid('item ' .. i .. ': kind ' .. tostring(item.kind))
  end
  items[i] = item
end

-- Every record must be readable before anything is written.
local backlog_type = redis.call('TYPE', backlog).ok
if backlog_type ~= 'zset' and backlog_type ~= 'none' then
  return corrupt(backlog, 'type', 'is ' .. backlog_type .. ', not a sorted set')
end
for _, item in ipairs(items) do
  local _, err = read_record(item.key)
  if err then
    return err
  end
  local deferrals = redis.call('HGET', item.key, 'deferrals')
  if deferrals and uint(deferrals) == nil then
    return corrupt(item.key, 'deferrals', 'is not a non-negative integer: ' .. deferrals)
  end
end
local group_err = ensure_group(intake, 'engine')
if group_err then
  return group_err
end

local out = {}
for i, item in ipairs(items) do
  local record = read_record(item.key)
  local done = false
  if not record.state then
    record.state = 'failed'
  elseif item.kind == 'scheduled' then
    done = schedule(item.key, record, item.a, item.b, now) == nil
  elseif record.state == 'pending' then
    if item.kind == 'deferred' then
      redis.call('ZADD', backlog, str(item.not_before), item.container)
      redis.call('HINCRBY', item.key, 'deferrals', 1)
      redis.call('HSET', item.key, 'reason', item.b, 'demand_pool', item.c,
        'demand_gpu', item.d)
    else
      finish(item.key, record, 'failed', item.a, now)
    end
    done = true
  end
  drop_entry(intake, item.entry)
  if done then
    out[i] = { 'done' }
  else
    out[i] = { 'superseded', record.state, record.worker, record.attempt }
  end
end
return out
