-- berth: stop containers on a worker to book a request of higher priority in their place.
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`, 2 owned hash `P:{w:ID}:owned`,
--       3 assignment stream `P:{w:ID}:assign`.
-- ARGV: 1 container, 2 attempt, 3 cpu, 4 mem, 5 gpu, 6 devices (`index:milli,...`, '' for
--       none), 7 payload JSON: the preemptor's reservation, as commit_lib.lua takes one;
--       8 the number n of victims, then n times: container, attempt.
-- Reply: as commit.lua's: {'ok', worker, already} (already: the preemptor's container and
--        attempt when it was booked before: a retry) | {'unknown'} | {'not_accepting',
--        worker} | {'no_room', worker} | {'owned_elsewhere', worker} | {'victim_gone',
--        worker} (a victim is not owned under its attempt any more).
-- Guarantee: atomic, all or nothing. Only when the worker accepts work, every victim is
--   owned under its attempt, and the preemptor fits in what is free plus what the victims
--   hold (CPU, memory, GPUs, and its device shares on exactly the victims' and the free
--   devices): the victims' entries are removed with their undelivered assignments, their
--   capacity is credited, the preemptor is booked and its assignment appended, carrying
--   the victims (`preempts`, space-separated) so the worker stops them before it starts
--   it; the version is bumped once. The freed capacity is never free in between: nobody
--   else can book it. The victims' records are the caller's next step (reclaim.lua, end
--   `preempted`, on the intake's slot). A retry after success changes nothing.

local worker_key, owned_key, assign_key = KEYS[1], KEYS[2], KEYS[3]
local container, attempt = ARGV[1], ARGV[2]
local cpu, mem, gpu = uint(ARGV[3]), uint(ARGV[4]), uint(ARGV[5])
local shares = parse_devices(ARGV[6] or '', 1)
local n = uint(ARGV[8])
if container == '' or not string.find(attempt or '', '^%S+$') or cpu == nil or mem == nil
    or gpu == nil or shares == nil or n == nil or n == 0 or #ARGV ~= 8 + 2 * n then
  return invalid('preempt arguments')
end

local worker = load_worker(worker_key)
if worker == nil then
  return { 'unknown' }
end
local cap, err = read_worker(worker_key, worker)
if err then
  return err
end
local held = redis.call('HGET', owned_key, container)
if held then
  local entry = parse_owned(held)
  if entry == nil then
    return corrupt(owned_key, container, owned_problem(held))
  end
  if entry.attempt ~= attempt then
    return { 'owned_elsewhere', worker_reply(worker) }
  end
  return { 'ok', worker_reply(worker), { container, attempt } }
end
if cap.status ~= 'available' and cap.status ~= 'pending' then
  return { 'not_accepting', worker_reply(worker) }
end

-- The victims, each owned under its attempt, and what they hold together.
local victims, freed_cpu, freed_mem, freed_gpu, freed_shares = {}, 0, 0, 0, {}
for i = 1, n do
  local victim, victim_attempt = ARGV[8 + 2 * i - 1], ARGV[8 + 2 * i]
  local owned = redis.call('HGET', owned_key, victim)
  if not owned then
    return { 'victim_gone', worker_reply(worker) }
  end
  local entry = parse_owned(owned)
  if entry == nil then
    return corrupt(owned_key, victim, owned_problem(owned))
  end
  if entry.attempt ~= victim_attempt then
    return { 'victim_gone', worker_reply(worker) }
  end
  victims[i] = { victim, victim_attempt }
  freed_cpu, freed_mem, freed_gpu = freed_cpu + entry.cpu, freed_mem + entry.mem, freed_gpu + entry.gpu
  for _, share in ipairs(entry.devices) do
    freed_shares[#freed_shares + 1] = share
  end
end
local free_cpu, free_mem = cap.free_cpu + freed_cpu, cap.free_mem + freed_mem
local free_gpu = cap.free_gpu + freed_gpu
if free_cpu > cap.total_cpu or free_mem > cap.total_mem or free_gpu > cap.total_gpu then
  return corrupt(worker_key, 'free', 'releasing the victims would raise free above total')
end
if cpu > free_cpu or mem > free_mem or gpu > free_gpu then
  return { 'no_room', worker_reply(worker) }
end
free_cpu, free_mem, free_gpu = free_cpu - cpu, free_mem - mem, free_gpu - gpu
local device_free = nil
if #freed_shares > 0 or #shares > 0 then
  local free, bad = read_device_free(worker_key, worker)
  if bad then
    return bad
  end
  local credited = move_shares(free, freed_shares, 1, false)
  if credited == nil then
    return corrupt(worker_key, 'gpu_free', 'releasing the victims would raise a device above the whole')
  end
  device_free = move_shares(credited, shares, -1, true)
  if device_free == nil then
    return { 'no_room', worker_reply(worker) }
  end
  free_gpu = whole_devices(device_free)
end

-- Writes. The append goes first: it is what finds a stream key of another type.
local names = {}
for i, v in ipairs(victims) do
  names[i] = v[1]
end
local fields = { 'container', container, 'attempt', attempt, 'cpu', ARGV[3], 'mem', ARGV[4],
  'gpu', ARGV[5] }
if ARGV[6] ~= '' then
  fields[#fields + 1] = 'devices'
  fields[#fields + 1] = ARGV[6]
end
fields[#fields + 1] = 'preempts'
fields[#fields + 1] = table.concat(names, ' ')
fields[#fields + 1] = 'payload'
fields[#fields + 1] = ARGV[7]
local added = redis.pcall('XADD', assign_key, '*', unpack(fields))
if type(added) == 'table' and added.err then
  return corrupt(assign_key, 'type', 'is not a stream: ' .. added.err)
end
for _, v in ipairs(victims) do
  redis.call('HDEL', owned_key, v[1])
  drop_assignments(assign_key, v[1], v[2])
end
local entry = attempt .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5]
if ARGV[6] ~= '' then
  entry = entry .. ' ' .. ARGV[6]
end
redis.call('HSET', owned_key, container, entry)
worker.free_cpu, worker.free_mem, worker.free_gpu = str(free_cpu), str(free_mem), str(free_gpu)
worker.version = str(cap.version + 1)
if device_free then
  worker.gpu_free = format_devices(device_free)
  redis.call('HSET', worker_key, 'gpu_free', worker.gpu_free)
end
redis.call('HSET', worker_key, 'free_cpu', worker.free_cpu, 'free_mem', worker.free_mem,
  'free_gpu', worker.free_gpu, 'version', worker.version)
return { 'ok', worker_reply(worker), {} }
