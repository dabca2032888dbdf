-- berth: helpers for the scripts on the intake's keys (`P:{q}:*`); prepended after lib.lua.

local STATES = {
  pending = true, scheduled = true, running = true, exited = true, failed = true, lost = true,
}
local TERMINAL = { exited = true, failed = true, lost = true }

-- The record's state, worker and attempt, or nil and an error reply. A missing record has
-- state false.
local function read_record(key)
  local r = redis.call('HMGET', key, 'state', 'worker', 'attempt')
  if r[1] and not STATES[r[1]] then
    return nil, corrupt(key, 'state', 'is not a container state: ' .. r[1])
  end
  return { state = r[1], worker = r[2] or '', attempt = r[3] or '' }, nil
end

local function holds(record, worker, attempt)
  return record.worker == worker and record.attempt == attempt
end

-- True when `attempt` was revoked on the record (`revoked`: attempts separated by spaces):
-- a reservation the reaper gave back before its settlement arrived.
local function revoked(revoked_list, attempt)
  if type(revoked_list) ~= 'string' or revoked_list == '' then
    return false -- a missing field reads as false in Lua
  end
  return string.find(' ' .. revoked_list .. ' ', ' ' .. attempt .. ' ', 1, true) ~= nil
end

-- Ends a record as `state` with a reason.
local function finish(key, record, state, reason, now)
  redis.call('HSET', key, 'state', state, 'reason', reason, 'finished_ms', str(now))
  record.state = state
end

-- The hash tag of a key (`{q}` in `P:{q}:intake`), or nil.
local function hash_tag(key)
  return string.match(key, '^[^{]*(%b{})')
end

-- Checks the record key prefix passed to scripts that derive record keys from container
-- ids. Those keys are not declared in KEYS; that is safe on Redis Cluster only because they
-- share the hash tag (so the slot) of the intake key, which this verifies.
local function check_prefix(intake, prefix)
  local tag = hash_tag(intake)
  if tag == nil or hash_tag(prefix) ~= tag then
    return invalid('record prefix ' .. tostring(prefix) .. ' is not in the slot of ' .. intake)
  end
  return nil
end

local function drop_entry(intake, entry)
  redis.call('XACK', intake, 'engine', entry)
  redis.call('XDEL', intake, entry)
end

-- Screens one claimed intake entry: a pending record becomes a claim {entry, id, request};
-- an entry without an id, or whose record cannot be read, is dropped and reported in bad
-- {entry, id, problem}; an entry whose record is missing or no longer pending is dropped.
-- `redelivered` ('1' or '0') says whether the entry was claimed before (XAUTOCLAIM).
local function screen(intake, prefix, entry, fields, claims, bad, redelivered)
  local id
  for i = 1, #fields, 2 do
    if fields[i] == 'id' then
      id = fields[i + 1]
    end
  end
  if id == nil or id == '' then
    drop_entry(intake, entry)
    bad[#bad + 1] = { entry, '', 'the intake entry has no id field' }
    return
  end
  local ok, record = pcall(redis.call, 'HMGET', prefix .. id, 'state', 'request')
  if not ok then
    drop_entry(intake, entry)
    bad[#bad + 1] = { entry, id, 'its record cannot be read: ' .. tostring(record) }
    return
  end
  if record[1] == 'pending' then
    claims[#claims + 1] = { entry, id, record[2] or '', redelivered }
  else
    drop_entry(intake, entry)
  end
end
