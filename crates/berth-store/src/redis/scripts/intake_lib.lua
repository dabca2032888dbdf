-- berth: helpers for the scripts on the intake's keys (`P:{q}:*`); prepended after lib.lua.

local STATES = {
  pending = true, scheduled = true, pulling = true, running = true, exited = true,
  failed = true, lost = true, preempted = true,
}
local TERMINAL = { exited = true, failed = true, lost = true, preempted = true }

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

-- Tenants' charges and usage (see crate::quotas), on the intake's slot:
--   `P:{q}:charges` HASH container id -> `tenant cpu mem gpu_milli [gpu_type]`;
--   `P:{q}:usage`   HASH tenant -> `containers cpu mem gpu_milli [TYPE=milli ...]`, the sum
--                   of the tenant's charges (a tenant holding nothing has no field).
-- The keys are derived from any key of the slot, e.g. a record key.

-- `P:{q}` of a key in the intake's slot.
local function slot_base(key)
  return string.match(key, '^(.-%b{})')
end

-- The charges of `items[i].container` for every i, in item order (false where none), read
-- with one HMGET per 500 items.
local function charges_of(charges, items)
  local found = {}
  for from = 1, #items, 500 do
    local to = math.min(#items, from + 499)
    local ids = {}
    for i = from, to do
      ids[#ids + 1] = items[i].container
    end
    local got = redis.call('HMGET', charges, unpack(ids))
    for i = from, to do
      found[i] = got[i - from + 1]
    end
  end
  return found
end

-- A charge's text as a table, or nil when it does not read.
local function parse_charge(text)
  if type(text) ~= 'string' then
    return nil
  end
  local tenant, cpu, mem, gpu, rest = string.match(text, '^(%S+) (%d+) (%d+) (%d+)(.*)$')
  if tenant == nil then
    return nil
  end
  local gpu_type = string.match(rest, '^ (%S+)$')
  if rest ~= '' and gpu_type == nil then
    return nil
  end
  return { tenant = tenant, cpu = tonumber(cpu), mem = tonumber(mem), gpu = tonumber(gpu),
    gpu_type = gpu_type }
end

-- A tenant's usage as a table; a missing or unreadable one reads as nothing held.
local function read_usage(usage_key, tenant)
  local u = { n = 0, cpu = 0, mem = 0, gpu = 0, types = {} }
  local text = redis.call('HGET', usage_key, tenant)
  if not text then
    return u
  end
  local n, cpu, mem, gpu, rest = string.match(text, '^(%d+) (%d+) (%d+) (%d+)(.*)$')
  if n == nil then
    return u
  end
  u.n, u.cpu, u.mem, u.gpu = tonumber(n), tonumber(cpu), tonumber(mem), tonumber(gpu)
  for gpu_type, milli in string.gmatch(rest, ' (%S+)=(%d+)') do
    u.types[gpu_type] = tonumber(milli)
  end
  return u
end

local function write_usage(usage_key, tenant, u)
  if u.n <= 0 and u.cpu <= 0 and u.mem <= 0 and u.gpu <= 0 then
    redis.call('HDEL', usage_key, tenant)
    return
  end
  local names = {}
  for gpu_type, milli in pairs(u.types) do
    if milli > 0 then
      names[#names + 1] = gpu_type
    end
  end
  table.sort(names)
  local text = str(u.n) .. ' ' .. str(u.cpu) .. ' ' .. str(u.mem) .. ' ' .. str(u.gpu)
  for _, gpu_type in ipairs(names) do
    text = text .. ' ' .. gpu_type .. '=' .. str(u.types[gpu_type])
  end
  redis.call('HSET', usage_key, tenant, text)
end

-- Adds (sign 1) or takes back (sign -1) one charge to a usage table, never below zero.
local function add_charge(u, c, sign)
  local function add(a, b)
    return math.max(0, a + sign * b)
  end
  u.n, u.cpu, u.mem, u.gpu = add(u.n, 1), add(u.cpu, c.cpu), add(u.mem, c.mem), add(u.gpu, c.gpu)
  if c.gpu_type then
    u.types[c.gpu_type] = add(u.types[c.gpu_type] or 0, c.gpu)
  end
end

-- Gives a container's charge back, if it has one. Tolerant by design (it runs after other
-- writes): an unreadable charge is dropped without crediting any usage.
local function uncharge(any_key, container)
  local base = slot_base(any_key)
  local charges, usage = base .. ':charges', base .. ':usage'
  local text = redis.call('HGET', charges, container)
  if not text then
    return
  end
  redis.call('HDEL', charges, container)
  local c = parse_charge(text)
  if c then
    local u = read_usage(usage, c.tenant)
    add_charge(u, c, -1)
    write_usage(usage, c.tenant, u)
  end
end

-- The container id of a record key `P:{q}:c:ID`.
local function record_id(key)
  return string.match(key, '%b{}:c:(.*)$')
end

-- Ends a record as `state` with a reason, and gives its charge back.
local function finish(key, record, state, reason, now)
  redis.call('HSET', key, 'state', state, 'reason', reason, 'finished_ms', str(now))
  record.state = state
  uncharge(key, record_id(key))
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
