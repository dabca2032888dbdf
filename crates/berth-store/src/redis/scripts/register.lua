-- berth: register a worker, or update a registered one (idempotent upsert).
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`, 2 owned hash `P:{w:ID}:owned`,
--       3 assignment stream `P:{w:ID}:assign`.
-- ARGV: 1 now ms, 2 status, 3 total cpu, 4 total mem, 5 total gpu, 6 the bookable devices
--       wholly free (`index:1000,...`, '' without GPUs); then pairs of field and
--       value: the worker's static attributes (berth_core::attributes::WORKER_ATTRIBUTES),
--       validated and formatted by the caller and written as given (this script does not know
--       their names; it refuses only a field it manages itself or an empty one).
-- Reply: {'ok', worker} (the worker hash after the call) |
--        {'below_reserved', cpu, mem, gpu} (what is reserved, above the new total).
-- Guarantee: atomic; every argument and the stored state are checked before the first
--   write. Free becomes total minus what the owned hash holds; the version is
--   bumped and so is the epoch, the agent's lease (a new worker starts at version 1 and
--   epoch 1, its heartbeat at now); the assignment stream and its
--   consumer group `agent` are created if missing. The caller adds the id to the index
--   `P:workers` (another slot) before calling this. The images field is cleared: a new
--   lease starts without images until the agent reports them.

local worker_key, owned_key, assign_key = KEYS[1], KEYS[2], KEYS[3]
local FIXED = 6
if #ARGV < FIXED or (#ARGV - FIXED) % 2 ~= 0 then
  return invalid('register takes 6 arguments and field/value pairs, got ' .. #ARGV)
end
local statuses = { available = true, pending = true, draining = true, disabled = true,
  lost = true }
local now = uint(ARGV[1])
local total = { cpu = uint(ARGV[3]), mem = uint(ARGV[4]), gpu = uint(ARGV[5]) }
local devices = parse_devices(ARGV[6], 0)
if not statuses[ARGV[2]] or now == nil
  or total.cpu == nil or total.mem == nil or total.gpu == nil or devices == nil then
  return invalid('registration fields')
end
-- The fields this script writes itself: an attribute must not name one.
local managed = { status = true, total_cpu = true, total_mem = true, total_gpu = true,
  free_cpu = true, free_mem = true, free_gpu = true, gpu_free = true, version = true,
  epoch = true, heartbeat_ms = true }
local attributes = {}
for i = FIXED + 1, #ARGV, 2 do
  if ARGV[i] == '' or managed[ARGV[i]] then
    return invalid('attribute field ' .. ARGV[i])
  end
  attributes[#attributes + 1] = ARGV[i]
  attributes[#attributes + 1] = ARGV[i + 1]
end

-- What the owned hash holds.
local reserved = { cpu = 0, mem = 0, gpu = 0 }
local shares = {}
local owned = redis.call('HGETALL', owned_key)
for i = 1, #owned, 2 do
  local entry = parse_owned(owned[i + 1])
  if entry == nil then
    return corrupt(owned_key, owned[i], owned_problem(owned[i + 1]))
  end
  reserved.cpu = reserved.cpu + entry.cpu
  reserved.mem = reserved.mem + entry.mem
  reserved.gpu = reserved.gpu + entry.gpu
  for _, share in ipairs(entry.devices) do
    shares[#shares + 1] = share
  end
end
-- What its containers hold of each device stays held; a device no longer listed (not
-- bookable now) has nothing to take from.
local device_free = move_shares(devices, shares, -1, false)
if reserved.cpu > total.cpu or reserved.mem > total.mem or reserved.gpu > total.gpu
  or device_free == nil then
  return { 'below_reserved', str(reserved.cpu), str(reserved.mem), str(reserved.gpu) }
end

local exists = redis.call('EXISTS', worker_key) == 1
local version, epoch = 0, 0
local heartbeat = ARGV[1]
if exists then
  local stored = redis.call('HMGET', worker_key, 'version', 'heartbeat_ms', 'epoch')
  version = uint(stored[1])
  if version == nil then
    return corrupt(worker_key, 'version', 'is not a non-negative integer: ' .. tostring(stored[1]))
  end
  if stored[2] then
    heartbeat = stored[2]
  end
  epoch = uint(stored[3] or '0')
  if epoch == nil then
    return corrupt(worker_key, 'epoch', 'is not a non-negative integer: ' .. tostring(stored[3]))
  end
end
local stream_type = redis.call('TYPE', assign_key).ok
if stream_type ~= 'stream' and stream_type ~= 'none' then
  return corrupt(assign_key, 'type', 'is ' .. stream_type .. ', not a stream')
end

local managed_values = { 'status', ARGV[2],
  'total_cpu', str(total.cpu), 'total_mem', str(total.mem), 'total_gpu', str(total.gpu),
  'free_cpu', str(total.cpu - reserved.cpu), 'free_mem', str(total.mem - reserved.mem),
  'free_gpu', str(total.gpu > 0 and whole_devices(device_free) or 0),
  'version', str(version + 1), 'epoch', str(epoch + 1), 'heartbeat_ms', heartbeat }
for _, item in ipairs(managed_values) do
  attributes[#attributes + 1] = item
end
-- `gpu_free` only with devices to book: a CPU worker's hash (most) is one field shorter
-- for every script that reads it whole.
local gpu_free = format_devices(device_free)
if gpu_free ~= '' then
  attributes[#attributes + 1] = 'gpu_free'
  attributes[#attributes + 1] = gpu_free
else
  redis.call('HDEL', worker_key, 'gpu_free')
end
hset_all(worker_key, attributes)
-- A new lease starts without images: the agent reports what it holds under it.
redis.call('HDEL', worker_key, 'images')
local group_err = ensure_group(assign_key, 'agent')
if group_err then
  return group_err
end
return { 'ok', redis.call('HGETALL', worker_key) }
