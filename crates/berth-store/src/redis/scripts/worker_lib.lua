-- berth: helpers for the scripts on one worker's keys (`P:{w:ID}:*`); prepended after lib.lua.

-- Fields per HMGET / HSET call: keeps unpack() far below Lua's stack limit.
local CHUNK = 500
-- The worker fields commit and release check and do arithmetic on, in the order they are
-- checked. Every other field of the worker hash (its static attributes) they only pass on.
local CAPACITY_FIELDS = { 'total_cpu', 'total_mem', 'total_gpu', 'free_cpu', 'free_mem',
  'free_gpu', 'version' }

-- The worker hash at `key` as a table field -> value (one HGETALL), or nil when the worker
-- is not registered.
local function load_worker(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then
    return nil
  end
  local w = {}
  for i = 1, #flat, 2 do
    w[flat[i]] = flat[i + 1]
  end
  return w
end

-- A worker table as a reply: the flat field/value list HGETALL would give (codec.rs reads
-- it as the worker hash).
local function worker_reply(w)
  local out = {}
  for field, value in pairs(w) do
    out[#out + 1] = field
    out[#out + 1] = value
  end
  return out
end

-- The capacity, version and status of the worker table `w` (from load_worker): a table with
-- the numbers and the status, or nil and an error reply naming the first unreadable field.
local function read_worker(key, w)
  local cap = {}
  for _, field in ipairs(CAPACITY_FIELDS) do
    local value = w[field]
    local n = uint(value)
    if n == nil then
      if not value then
        return nil, corrupt(key, field, 'is missing')
      end
      return nil, corrupt(key, field, 'is not a non-negative integer: ' .. value)
    end
    cap[field] = n
  end
  local status = w.status
  if not status then
    return nil, corrupt(key, 'status', 'is missing')
  end
  if status ~= 'available' and status ~= 'pending' and status ~= 'draining'
    and status ~= 'disabled' and status ~= 'lost' then
    return nil, corrupt(key, 'status', 'is not a worker status: ' .. status)
  end
  cap.status = status
  return cap, nil
end

-- The fence of a worker agent's call: nil when `given` is '' (the call is not an agent's)
-- or is the worker's current epoch; otherwise the reply {'stale', current epoch}.
local function stale_epoch(worker_key, given)
  if given == '' then
    return nil
  end
  local current = redis.call('HGET', worker_key, 'epoch') or '0'
  if current ~= given then
    return { 'stale', current }
  end
  return nil
end

-- Acknowledges and deletes the entries of the assignment stream `assign_key` for
-- `container` under `attempt`: a released reservation leaves no delivery behind. The
-- stream holds only unacknowledged entries, so the scan is short.
local function drop_assignments(assign_key, container, attempt)
  if redis.call('EXISTS', assign_key) == 0 then
    return
  end
  for _, entry in ipairs(redis.call('XRANGE', assign_key, '-', '+')) do
    local fields, c, a = entry[2], nil, nil
    for i = 1, #fields, 2 do
      if fields[i] == 'container' then
        c = fields[i + 1]
      elseif fields[i] == 'attempt' then
        a = fields[i + 1]
      end
    end
    if c == container and a == attempt then
      redis.pcall('XACK', assign_key, 'agent', entry[1])
      redis.call('XDEL', assign_key, entry[1])
    end
  end
end

-- HSET key with the flat field/value list `list`, in chunks.
local function hset_all(key, list)
  for from = 1, #list, 2 * CHUNK do
    redis.call('HSET', key, unpack(list, from, math.min(#list, from + 2 * CHUNK - 1)))
  end
end

-- HMGET key for every field in `fields`, in chunks; the values in order (false if absent).
local function hmget_all(key, fields)
  if #fields <= CHUNK then
    return redis.call('HMGET', key, unpack(fields))
  end
  local out = {}
  for from = 1, #fields, CHUNK do
    local part = redis.call('HMGET', key, unpack(fields, from, math.min(#fields, from + CHUNK - 1)))
    for i, value in ipairs(part) do
      out[from + i - 1] = value
    end
  end
  return out
end

-- One whole GPU in milli-GPUs.
local GPU_MILLI = 1000

-- A device list `index:milli,...` as an array of {index, milli} in order, each milli from
-- `least` to GPU_MILLI, no index twice; nil if it is not that. '' is the empty list.
local function parse_devices(s, least)
  local out, seen = {}, {}
  if s == '' then
    return out
  end
  for part in string.gmatch(s .. ',', '([^,]*),') do
    local index, milli = string.match(part, '^(%d+):(%d+)$')
    index, milli = uint(index), uint(milli)
    if index == nil or milli == nil or milli < least or milli > GPU_MILLI or seen[index] then
      return nil
    end
    seen[index] = true
    out[#out + 1] = { index = index, milli = milli }
  end
  return out
end

-- A device list as `index:milli,...`.
local function format_devices(list)
  local parts = {}
  for i, d in ipairs(list) do
    parts[i] = d.index .. ':' .. d.milli
  end
  return table.concat(parts, ',')
end

-- How many devices of the free list are wholly free: the worker's free GPU count.
local function whole_devices(free)
  local n = 0
  for _, d in ipairs(free) do
    if d.milli == GPU_MILLI then
      n = n + 1
    end
  end
  return n
end

-- The free list with `shares` taken (sign -1) or given back (sign 1), as a new list; nil
-- when a share would take a device below 0 or raise it above the whole, or (`strict`)
-- names a device not in the list. Not strict, such shares are skipped: the device is not
-- bookable now (unhealthy), so there is nothing to account on it.
local function move_shares(free, shares, sign, strict)
  local out, at = {}, {}
  for i, d in ipairs(free) do
    out[i] = { index = d.index, milli = d.milli }
    at[d.index] = i
  end
  for _, share in ipairs(shares) do
    local i = at[share.index]
    if i == nil then
      if strict then
        return nil
      end
    else
      local milli = out[i].milli + sign * share.milli
      if milli < 0 or milli > GPU_MILLI then
        return nil
      end
      out[i].milli = milli
    end
  end
  return out
end

-- The worker table's free device list (field `gpu_free`), or nil and an error reply.
local function read_device_free(key, w)
  local list = parse_devices(w.gpu_free or '', 0)
  if list == nil then
    return nil, corrupt(key, 'gpu_free', 'is not index:free,...: ' .. tostring(w.gpu_free))
  end
  return list, nil
end

-- An ownership entry `attempt cpu mem gpu [devices]`, or nil.
local function parse_owned(s)
  local attempt, cpu, mem, gpu, devices = string.match(s, '^(%S+) (%d+) (%d+) (%d+) (%S+)$')
  if attempt == nil then
    attempt, cpu, mem, gpu = string.match(s, '^(%S+) (%d+) (%d+) (%d+)$')
    devices = ''
  end
  if attempt == nil then
    return nil
  end
  local entry = { attempt = attempt, cpu = uint(cpu), mem = uint(mem), gpu = uint(gpu),
    devices = parse_devices(devices, 1) }
  if entry.cpu == nil or entry.mem == nil or entry.gpu == nil or entry.devices == nil then
    return nil
  end
  return entry
end

local function owned_problem(s)
  return 'is not "attempt cpu mem gpu [devices]": ' .. s
end
