-- berth: settle claimed intake entries.
--
-- KEYS: 1 intake stream `P:{q}:intake`, 2 backlog zset `P:{q}:backlog`, then one record
--       hash `P:{q}:c:ID` per item.
-- ARGV: 1 now, ms since the epoch; then per item seven: intake entry id, container id, kind,
--       a, b, c, d, where for kind `scheduled` a = worker, b = attempt; for `deferred`
--       a = not before (ms), b = reason, c = the pool to grow ('' for none), d = its GPU
--       type ('' for none); for `failed` a = reason; for `scheduled` also c = the charge
--       (`tenant cpu mem gpu_milli [gpu_type]`). Unused ones are ''.
-- Reply: per item {'done'} or {'superseded', state, worker, attempt} (worker and attempt
--        '' when the record holds none; state 'failed' for a missing record).
-- Guarantee: each item atomically, in order: scheduled follows the state machine's table
--   (LIFECYCLE, rendered from berth_core::lifecycle::cell) as a scheduled transition would:
--   it moves a pending record to scheduled unless the attempt was revoked (its worker was
--   declared lost before the settlement came: then the item is superseded, and the
--   still-pending record goes back into the intake as a fresh entry, so it is placed again
--   rather than left in neither the intake nor the backlog) (already scheduled or running
--   by the same worker and attempt: done); deferred keeps a
--   pending record pending, adds it to the backlog at not-before, counts the deferral and
--   records the reason and the pool it waits for (`demand_pool`, `demand_gpu`); failed ends a pending record as failed. A record that moved on is
--   reported as superseded. A scheduled item that is done charges its container to its
--   tenant (`P:{q}:charges`, `P:{q}:usage`) unless it is charged already (a hold did); a
--   deferred, failed or revoked one gives its charge back. The entry is acknowledged and deleted from the intake either way
--   (all entries of the call at its end, still inside the one atomic step). Arguments and
--   every record are checked (and read, once) before the first write.

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
    item.charge = parse_charge(item.c)
    if item.charge == nil then
      return invalid('item ' .. i .. ': charge ' .. tostring(item.c))
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

-- Every record is read once, and must be readable, before anything is written. The
-- intake's and the backlog's types are checked once per call.
local intake_type = redis.call('TYPE', intake).ok
if intake_type ~= 'stream' and intake_type ~= 'none' then
  return corrupt(intake, 'type', 'is ' .. intake_type .. ', not a stream')
end
-- An item repeating a record shares its table, so that it sees the earlier item's writes.
local records, by_key, deferring = {}, {}, false
for i, item in ipairs(items) do
  deferring = deferring or item.kind == 'deferred'
  local r = by_key[item.key] and {}
    or redis.call('HMGET', item.key, 'state', 'worker', 'attempt', 'deferrals', 'reason',
      'revoked')
  if r[1] and not STATES[r[1]] then
    return corrupt(item.key, 'state', 'is not a container state: ' .. r[1])
  end
  if r[4] and uint(r[4]) == nil then
    return corrupt(item.key, 'deferrals', 'is not a non-negative integer: ' .. r[4])
  end
  if not by_key[item.key] then
    by_key[item.key] = { state = r[1], worker = r[2] or '', attempt = r[3] or '',
      deferrals = uint(r[4] or '0'), reason = r[5], revoked = r[6] }
  end
  records[i] = by_key[item.key]
end
if deferring then
  local backlog_type = redis.call('TYPE', backlog).ok
  if backlog_type ~= 'zset' and backlog_type ~= 'none' then
    return corrupt(backlog, 'type', 'is ' .. backlog_type .. ', not a sorted set')
  end
end

local out, entries, requeue, requeued, placed = {}, {}, {}, {}, {}
local now_text = str(now)
for i, item in ipairs(items) do
  local record = records[i]
  local done = false
  if not record.state then
    record.state = 'failed'
  elseif item.kind == 'scheduled' then
    -- By the state machine's table, as the transition script.
    local known = facts(holds(record, item.a, item.b), revoked(record.revoked, item.b), false)
    local outcome = decide(record.state, 'scheduled', known, item.a, item.b)
    if outcome == 'allowed' then
      redis.call('HSET', item.key, 'state', 'scheduled', 'worker', item.a, 'attempt', item.b,
        'scheduled_ms', now_text)
      if record.reason then
        redis.call('HDEL', item.key, 'reason')
      end
      record.state, record.worker, record.attempt = 'scheduled', item.a, item.b
      record.reason = nil
      done = true
      placed[#placed + 1] = item
    elseif outcome == 'idempotent' then
      done = true
      placed[#placed + 1] = item
    elseif record.state == 'pending' then
      -- Refused while pending: the attempt was revoked. Placed again from a fresh entry.
      uncharge(item.key, item.container)
      if not requeued[item.container] then
        requeued[item.container] = true
        requeue[#requeue + 1] = item.container
      end
    end
  elseif record.state == 'pending' then
    if item.kind == 'deferred' then
      redis.call('ZADD', backlog, str(item.not_before), item.container)
      record.deferrals = record.deferrals + 1
      redis.call('HSET', item.key, 'deferrals', str(record.deferrals), 'reason', item.b,
        'demand_pool', item.c, 'demand_gpu', item.d)
      record.reason = item.b
      uncharge(item.key, item.container)
    else
      finish(item.key, record, 'failed', item.a, now)
      record.reason = item.a
    end
    done = true
  end
  entries[i] = item.entry
  if done then
    out[i] = { 'done' }
  else
    out[i] = { 'superseded', record.state, record.worker, record.attempt }
  end
end
for from = 1, #entries, 500 do
  local to = math.min(#entries, from + 499)
  redis.call('XACK', intake, 'engine', unpack(entries, from, to))
  redis.call('XDEL', intake, unpack(entries, from, to))
end
for _, container in ipairs(requeue) do
  redis.call('XADD', intake, '*', 'id', container)
end

-- Charges the placed containers not charged yet: one read of the charges, one write, and
-- one read and write of each tenant's usage.
if #placed > 0 then
  local base = slot_base(intake)
  local charges, usage = base .. ':charges', base .. ':usage'
  local fields, deltas, order, seen = {}, {}, {}, {}
  local have = charges_of(charges, placed)
  for i, item in ipairs(placed) do
    if not have[i] and not seen[item.container] then
      seen[item.container] = true
      fields[#fields + 1] = item.container
      fields[#fields + 1] = item.c
      local c = item.charge
      if not deltas[c.tenant] then
        deltas[c.tenant] = {}
        order[#order + 1] = c.tenant
      end
      table.insert(deltas[c.tenant], c)
    end
  end
  for from = 1, #fields, 1000 do
    redis.call('HSET', charges, unpack(fields, from, math.min(#fields, from + 999)))
  end
  for _, tenant in ipairs(order) do
    local u = read_usage(usage, tenant)
    for _, c in ipairs(deltas[tenant]) do
      add_charge(u, c, 1)
    end
    write_usage(usage, tenant, u)
  end
end
return out
