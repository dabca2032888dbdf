-- berth: register a worker, or update a registered one (idempotent upsert).
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`, 2 owned hash `P:{w:ID}:owned`,
--       3 assignment stream `P:{w:ID}:assign`.
-- ARGV: 1 pool, 2 priority, 3 preemptible (0|1), 4 requires_pool_selector (0|1), 5 policy,
--       6 status, 7 total cpu, 8 total mem, 9 total gpu, 10 gpu type ('' for none), 11 now ms.
-- Reply: {'ok', worker} (the worker hash after the call) |
--        {'below_reserved', cpu, mem, gpu} (what is reserved, above the new total).
-- Guarantee: atomic. Free becomes total minus what the owned hash holds; the version is
--   bumped and so is the epoch, the agent's lease (a new worker starts at version 1 and
--   epoch 1, its heartbeat at now); the assignment stream and its
--   consumer group `agent` are created if missing. The caller adds the id to the index
--   `P:workers` (another slot) before calling this.

local worker_key, owned_key, assign_key = KEYS[1], KEYS[2], KEYS[3]
if #ARGV ~= 11 then
  return invalid('register takes 11 arguments, got ' .. #ARGV)
end
local policies = { spread = true, pack = true }
local statuses = { available = true, pending = true, draining = true, disabled = true,
  lost = true }
local bools = { ['0'] = true, ['1'] = true }
local total = { cpu = uint(ARGV[7]), mem = uint(ARGV[8]), gpu = uint(ARGV[9]) }
local now = uint(ARGV[11])
if ARGV[1] == '' or int(ARGV[2]) == nil or not bools[ARGV[3]] or not bools[ARGV[4]]
  or not policies[ARGV[5]] or not statuses[ARGV[6]] or now == nil
  or total.cpu == nil or total.mem == nil or total.gpu == nil then
  return invalid('registration fields')
end

-- What the owned hash holds.
local reserved = { cpu = 0, mem = 0, gpu = 0 }
local owned = redis.call('HGETALL', owned_key)
for i = 1, #owned, 2 do
  local entry = parse_owned(owned[i + 1])
  if entry == nil then
    return corrupt(owned_key, owned[i], owned_problem(owned[i + 1]))
  end
  reserved.cpu = reserved.cpu + entry.cpu
  reserved.mem = reserved.mem + entry.mem
  reserved.gpu = reserved.gpu + entry.gpu
end
if reserved.cpu > total.cpu or reserved.mem > total.mem or reserved.gpu > total.gpu then
  return { 'below_reserved', str(reserved.cpu), str(reserved.mem), str(reserved.gpu) }
end

local exists = redis.call('EXISTS', worker_key) == 1
local version, epoch = 0, 0
local heartbeat = ARGV[11]
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

redis.call('HSET', worker_key,
  'pool', ARGV[1], 'priority', ARGV[2], 'preemptible', ARGV[3],
  'requires_pool_selector', ARGV[4], 'policy', ARGV[5], 'status', ARGV[6],
  'total_cpu', str(total.cpu), 'total_mem', str(total.mem), 'total_gpu', str(total.gpu),
  'free_cpu', str(total.cpu - reserved.cpu), 'free_mem', str(total.mem - reserved.mem),
  'free_gpu', str(total.gpu - reserved.gpu), 'gpu_type', ARGV[10],
  'version', str(version + 1), 'epoch', str(epoch + 1), 'heartbeat_ms', heartbeat)
local group_err = ensure_group(assign_key, 'agent')
if group_err then
  return group_err
end
return { 'ok', redis.call('HGETALL', worker_key) }
