-- berth: commit one group of reservations on one worker, lock-free or under the worker's lock.
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`, 2 owned hash `P:{w:ID}:owned`,
--       3 assignment stream `P:{w:ID}:assign`, 4 lock `P:{w:ID}:lock` (mode `locked` only).
-- ARGV: 1 mode, `free` or `locked`; 2 the lock token (`locked`; else ignored);
--       3 the expected version (`locked`; else ignored); 4 the number n of reservations;
--       then n times: container, attempt, cpu, mem, gpu, payload JSON.
-- Reply: {'unknown'} when the worker is not registered; else {outcome, worker} or
--        {'ok', worker, already}, where worker is the worker's state after the call: the
--        values of the fields in WORKER_FIELDS order (worker_lib.lua; false, i.e. nil, for
--        a missing field), already lists {container, attempt, ...} the worker owned before
--        (not reserved again) and outcome is 'lock_lost', 'version_conflict',
--        'owned_elsewhere' (a container is owned under another attempt), 'not_accepting' or
--        'no_room'.
-- Guarantee: all or nothing. The checks run in this order: worker exists, (locked: the lock
--   holds the token, the version is the expected one); if every container is owned already
--   under the same attempt (a retried commit) the reply is 'ok' and nothing is written, not
--   even the version; a container owned under another attempt rejects the group;
--   otherwise the status is available or pending and the containers not owned yet fit the
--   free capacity. Then free capacity is subtracted,
--   the version bumped, each new container recorded in the owned hash as
--   `attempt cpu mem gpu` and appended to the assignment stream. A container listed twice
--   is reserved once. Malformed arguments or stored data: an error reply, nothing written
--   (the assignment stream's type is checked by the first append, which comes before any
--   other write and fails alone).

local worker_key, owned_key, assign_key = KEYS[1], KEYS[2], KEYS[3]
local mode = ARGV[1]

-- 1. Arguments.
if mode ~= 'free' and mode ~= 'locked' then
  return invalid('mode ' .. tostring(mode))
end
local expected
if mode == 'locked' then
  if KEYS[4] == nil then
    return invalid('the locked mode needs the lock key')
  end
  expected = uint(ARGV[3])
  if expected == nil or ARGV[2] == nil or ARGV[2] == '' then
    return invalid('lock token or expected version')
  end
end
local n = uint(ARGV[4])
if n == nil or #ARGV ~= 4 + 6 * n then
  return invalid('reservation count ' .. tostring(ARGV[4]) .. ' for ' .. #ARGV .. ' arguments')
end
local containers, res = {}, {}
for i = 1, n do
  local at = 4 + (i - 1) * 6
  local container, attempt = ARGV[at + 1], ARGV[at + 2]
  local cpu, mem, gpu = uint(ARGV[at + 3]), uint(ARGV[at + 4]), uint(ARGV[at + 5])
  if container == '' or not string.find(attempt, '^%S+$') then
    return invalid('reservation ' .. i .. ': container or attempt')
  end
  if cpu == nil or mem == nil or gpu == nil then
    return invalid('reservation ' .. i .. ': resources')
  end
  containers[i] = container
  res[i] = { cpu, mem, gpu }
end

-- 2. Stored state, read and checked before any write.
local worker = redis.call('HMGET', worker_key, unpack(WORKER_FIELDS))
local cap, err = read_worker(worker_key, worker)
if err then
  return err
end
if cap == nil then
  return { 'unknown' }
end
if mode == 'locked' then
  if redis.call('GET', KEYS[4]) ~= ARGV[2] then
    return { 'lock_lost', worker }
  end
  if cap.version ~= expected then
    return { 'version_conflict', worker }
  end
end
-- 3. Split into already owned (an idempotent retry) and new reservations.
local owned = hmget_all(owned_key, containers)
local fresh, already, seen = {}, {}, {}
local cpu, mem, gpu = 0, 0, 0
for i = 1, n do
  local container = containers[i]
  if owned[i] then
    local entry = parse_owned(owned[i])
    if entry == nil then
      return corrupt(owned_key, container, owned_problem(owned[i]))
    end
    if entry.attempt ~= ARGV[4 + (i - 1) * 6 + 2] then
      -- Held under another attempt (about to be released or adopted): not a retry.
      return { 'owned_elsewhere', worker }
    end
    already[#already + 1] = container
    already[#already + 1] = entry.attempt
  elseif not seen[container] then
    seen[container] = true
    fresh[#fresh + 1] = i
    local r = res[i]
    cpu, mem, gpu = cpu + r[1], mem + r[2], gpu + r[3]
  end
end
if #fresh == 0 then
  -- A retry of a commit that already happened: nothing to write, whatever the status.
  return { 'ok', worker, already }
end
if cap.status ~= 'available' and cap.status ~= 'pending' then
  return { 'not_accepting', worker }
end
if cpu > cap.free_cpu or mem > cap.free_mem or gpu > cap.free_gpu then
  return { 'no_room', worker }
end

-- 4. Writes. The first append goes first: it is what finds a stream key of another type,
-- and it fails alone.
local entries = {}
for k, i in ipairs(fresh) do
  local at = 4 + (i - 1) * 6
  local r = res[i]
  local added = redis.pcall('XADD', assign_key, '*', 'container', ARGV[at + 1],
    'attempt', ARGV[at + 2], 'cpu', ARGV[at + 3], 'mem', ARGV[at + 4], 'gpu', ARGV[at + 5],
    'payload', ARGV[at + 6])
  if type(added) == 'table' and added.err then
    if k == 1 then
      return corrupt(assign_key, 'type', 'is not a stream: ' .. added.err)
    end
    return redis.error_reply(added.err)
  end
  entries[2 * k - 1] = ARGV[at + 1]
  entries[2 * k] = ARGV[at + 2] .. ' ' .. str(r[1]) .. ' ' .. str(r[2]) .. ' ' .. str(r[3])
end
hset_all(owned_key, entries)
local free_cpu, free_mem = str(cap.free_cpu - cpu), str(cap.free_mem - mem)
local free_gpu, version = str(cap.free_gpu - gpu), str(cap.version + 1)
redis.call('HSET', worker_key, 'free_cpu', free_cpu, 'free_mem', free_mem, 'free_gpu', free_gpu,
  'version', version)
worker[W_FREE_CPU], worker[W_FREE_MEM], worker[W_FREE_GPU] = free_cpu, free_mem, free_gpu
worker[W_VERSION] = version
return { 'ok', worker, already }
