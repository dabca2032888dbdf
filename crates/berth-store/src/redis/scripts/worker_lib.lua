-- berth: helpers for the scripts on one worker's keys (`P:{w:ID}:*`); prepended after lib.lua.

local CAPACITY_FIELDS = {
  'total_cpu', 'total_mem', 'total_gpu', 'free_cpu', 'free_mem', 'free_gpu', 'version',
}
local STATUSES = { available = true, pending = true, draining = true, disabled = true,
  lost = true }
-- Fields per HMGET / HSET call: keeps unpack() far below Lua's stack limit.
local CHUNK = 500

-- The worker hash read once: {flat = the HGETALL reply, map = field -> value}; nil when
-- the worker is not registered.
local function load_worker(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then
    return nil
  end
  local map = {}
  for i = 1, #flat, 2 do
    map[flat[i]] = flat[i + 1]
  end
  return { flat = flat, map = map }
end

-- The worker's capacity and version as numbers, or nil and an error reply naming the field.
local function read_capacity(key, worker)
  local out = {}
  for _, name in ipairs(CAPACITY_FIELDS) do
    local value = worker.map[name]
    local n = uint(value)
    if n == nil then
      if value == nil then
        return nil, corrupt(key, name, 'is missing')
      end
      return nil, corrupt(key, name, 'is not a non-negative integer: ' .. value)
    end
    out[name] = n
  end
  return out, nil
end

-- The worker's status, or nil and an error reply.
local function read_status(key, worker)
  local status = worker.map['status']
  if status == nil then
    return nil, corrupt(key, 'status', 'is missing')
  end
  if not STATUSES[status] then
    return nil, corrupt(key, 'status', 'is not a worker status: ' .. status)
  end
  return status, nil
end

-- What HGETALL returns after HSET of `changes` (field -> value) on fields that exist:
-- the reply every worker script ends with, without reading the hash again.
local function with_changes(worker, changes)
  local out = {}
  for i = 1, #worker.flat, 2 do
    local field = worker.flat[i]
    out[i] = field
    out[i + 1] = changes[field] or worker.flat[i + 1]
  end
  return out
end

-- HSET key with the flat field/value list `list`, in chunks.
local function hset_all(key, list)
  for from = 1, #list, 2 * CHUNK do
    redis.call('HSET', key, unpack(list, from, math.min(#list, from + 2 * CHUNK - 1)))
  end
end

-- HMGET key for every field in `fields`, in chunks; the values in order (false if absent).
local function hmget_all(key, fields)
  local out = {}
  for from = 1, #fields, CHUNK do
    local part = redis.call('HMGET', key, unpack(fields, from, math.min(#fields, from + CHUNK - 1)))
    for i, value in ipairs(part) do
      out[from + i - 1] = value
    end
  end
  return out
end

-- An ownership entry `attempt cpu mem gpu`, or nil.
local function parse_owned(s)
  local attempt, cpu, mem, gpu = string.match(s, '^(%S+) (%d+) (%d+) (%d+)$')
  if attempt == nil then
    return nil
  end
  local entry = { attempt = attempt, cpu = uint(cpu), mem = uint(mem), gpu = uint(gpu) }
  if entry.cpu == nil or entry.mem == nil or entry.gpu == nil then
    return nil
  end
  return entry
end

local function format_owned(attempt, cpu, mem, gpu)
  return attempt .. ' ' .. str(cpu) .. ' ' .. str(mem) .. ' ' .. str(gpu)
end

local function owned_problem(s)
  return 'is not "attempt cpu mem gpu": ' .. s
end

-- The whole worker hash, as HGETALL returns it.
local function worker_fields(key)
  return redis.call('HGETALL', key)
end
