-- berth: charge placements to their tenants' quotas before they are committed.
--
-- KEYS: 1 tenants' policies hash `P:{q}:tenants` (tenant -> policy JSON, berth_core::Tenant).
-- ARGV: 1 the record key prefix `P:{q}:c:`; then per item two: container id, charge
--       (`tenant cpu mem gpu_milli [gpu_type]`).
-- Reply: per item {'held'} | {'over' or 'never', dimension, limit, in use, asked}.
-- Guarantee: atomic, items in order, each judged against the usage the items before it
--   left: no interleaving of callers takes a tenant above a limit of its policy. An item
--   whose record is not pending is held without a charge (it was placed and charged by
--   someone else, or it ended and must not be charged); one charged already with the same
--   charge is held again without a judgement (a retried batch); one charged differently
--   gives that charge back and is judged anew. A tenant without a policy (or whose policy
--   does not decode) is held without a charge: its settlement charges it. The judgement
--   mirrors berth_core::Quota::judge: the limits in the order containers, cpu_millicores,
--   memory_mib, gpu_milli, gpu_milli[TYPE]; the first one the charge alone exceeds makes
--   it 'never', else the first one it would take above its limit makes it 'over'. Every
--   argument is checked before the first write; the charges and the usage are read once
--   and written once, at the end (a container given twice in one call sees its own earlier
--   item).

local tenants = KEYS[1]
local prefix = ARGV[1]
local n = (#ARGV - 1) / 2
if n < 0 or n ~= math.floor(n) then
  return invalid('hold takes a record prefix and two arguments per item')
end
local err = check_prefix(tenants, prefix)
if err then
  return err
end
local items = {}
for i = 1, n do
  local container, text = ARGV[2 * i], ARGV[2 * i + 1]
  local c = parse_charge(text)
  if container == '' or c == nil then
    return invalid('item ' .. i .. ': container or charge ' .. tostring(text))
  end
  items[i] = { container = container, text = text, charge = c }
end

local base = slot_base(tenants)
local charges, usage_key = base .. ':charges', base .. ':usage'
local policies, usages = {}, {}

-- A policy limit as a number, or nil when it sets none.
local function limit(v)
  return type(v) == 'number' and v or nil
end

-- The tenant's limits as plain numbers (`typed`: GPU type -> milli-GPUs), or false when it
-- has no policy (or it does not decode). Read and decoded once per tenant and call.
local function policy_of(tenant)
  if policies[tenant] == nil then
    local json = redis.call('HGET', tenants, tenant)
    local ok, policy = pcall(cjson.decode, json or 'null')
    local quota = ok and type(policy) == 'table' and type(policy.quota) == 'table'
      and policy.quota
    policies[tenant] = quota and {
      n = limit(quota.containers), cpu = limit(quota.cpu_millicores),
      mem = limit(quota.memory_mib), gpu = limit(quota.gpu_milli),
      typed = type(quota.gpu_milli_by_type) == 'table' and quota.gpu_milli_by_type or nil,
    } or false
  end
  return policies[tenant]
end

local function usage_of(tenant)
  if usages[tenant] == nil then
    usages[tenant] = read_usage(usage_key, tenant)
  end
  return usages[tenant]
end

-- The refusal of a charge `c` against limits `q` with usage `u`, or nil: the first limit
-- (in the order containers, cpu_millicores, memory_mib, gpu_milli, gpu_milli[TYPE]) the
-- charge alone exceeds makes it 'never', else the first it would take above its limit
-- 'over'. No table is built unless it refuses.
local function judge(q, u, c)
  local typed = c.gpu_type and q.typed and limit(q.typed[c.gpu_type])
  local typed_used = typed and (u.types[c.gpu_type] or 0)
  local function refuse(kind, dimension, lim, used, asked)
    return { kind, dimension, str(lim), str(used), str(asked) }
  end
  if q.n and 1 > q.n then
    return refuse('never', 'containers', q.n, u.n, 1)
  elseif q.cpu and c.cpu > q.cpu then
    return refuse('never', 'cpu_millicores', q.cpu, u.cpu, c.cpu)
  elseif q.mem and c.mem > q.mem then
    return refuse('never', 'memory_mib', q.mem, u.mem, c.mem)
  elseif q.gpu and c.gpu > q.gpu then
    return refuse('never', 'gpu_milli', q.gpu, u.gpu, c.gpu)
  elseif typed and c.gpu > typed then
    return refuse('never', 'gpu_milli[' .. c.gpu_type .. ']', typed, typed_used, c.gpu)
  elseif q.n and u.n + 1 > q.n then
    return refuse('over', 'containers', q.n, u.n, 1)
  elseif q.cpu and u.cpu + c.cpu > q.cpu then
    return refuse('over', 'cpu_millicores', q.cpu, u.cpu, c.cpu)
  elseif q.mem and u.mem + c.mem > q.mem then
    return refuse('over', 'memory_mib', q.mem, u.mem, c.mem)
  elseif q.gpu and u.gpu + c.gpu > q.gpu then
    return refuse('over', 'gpu_milli', q.gpu, u.gpu, c.gpu)
  elseif typed and typed_used + c.gpu > typed then
    return refuse('over', 'gpu_milli[' .. c.gpu_type .. ']', typed, typed_used, c.gpu)
  end
  return nil
end

-- One read of the charges (per 500 items), one write of the new ones and one of each
-- touched tenant's usage at the end: per item only the record's state is read.
local existing = charges_of(charges, items)

local out, charged, dropped, touched = {}, {}, {}, {}
local function touch(tenant)
  if not touched[tenant] then
    touched[tenant] = true
    touched[#touched + 1] = tenant
  end
end
for i, item in ipairs(items) do
  local c = item.charge
  local state = redis.call('HGET', prefix .. item.container, 'state')
  -- What this call charged or dropped for the container already wins over what was read.
  local had = existing[i]
  if charged[item.container] ~= nil then
    had = charged[item.container] or nil
  end
  if state ~= 'pending' or had == item.text then
    out[i] = { 'held' }
  else
    if had then
      local old = parse_charge(had)
      if old then
        add_charge(usage_of(old.tenant), old, -1)
        touch(old.tenant)
      end
      charged[item.container] = false
      dropped[item.container] = true
    end
    local quota = policy_of(c.tenant)
    local refusal = quota and judge(quota, usage_of(c.tenant), c)
    if refusal then
      out[i] = refusal
    else
      if quota then
        charged[item.container] = item.text
        dropped[item.container] = nil
        add_charge(usage_of(c.tenant), c, 1)
        touch(c.tenant)
      end
      out[i] = { 'held' }
    end
  end
end

local fields, gone = {}, {}
for container, text in pairs(charged) do
  if text then
    fields[#fields + 1] = container
    fields[#fields + 1] = text
  end
end
for container in pairs(dropped) do
  gone[#gone + 1] = container
end
for from = 1, #gone, 500 do
  redis.call('HDEL', charges, unpack(gone, from, math.min(#gone, from + 499)))
end
for from = 1, #fields, 1000 do
  redis.call('HSET', charges, unpack(fields, from, math.min(#fields, from + 999)))
end
for _, tenant in ipairs(touched) do
  write_usage(usage_key, tenant, usages[tenant])
end
return out
