-- berth: commit one group of reservations on one worker, lock-free or under the worker's lock.
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`, 2 owned hash `P:{w:ID}:owned`,
--       3 assignment stream `P:{w:ID}:assign`, 4 lock `P:{w:ID}:lock` (mode `locked` only).
-- ARGV: 1 mode, `free` or `locked`; 2 the lock token (`locked`; else ignored);
--       3 the expected version (`locked`; else ignored); 4 the number n of reservations;
--       then n times: container, attempt, cpu, mem, gpu, payload JSON.
-- Reply: {'unknown'} when the worker is not registered; else {outcome, worker} or
--        {'ok', worker, already}, where worker is the worker hash (HGETALL) after the call,
--        already lists {container, attempt, ...} the worker owned before (not reserved again)
--        and outcome is 'lock_lost', 'version_conflict', 'owned_elsewhere' (a container is
--        owned under another attempt), 'not_accepting' or 'no_room'.
-- Guarantee: all or nothing. The checks run in this order: worker exists, (locked: the lock
--   holds the token, the version is the expected one); if every container is owned already
--   under the same attempt (a retried commit) the reply is 'ok' and nothing is written, not
--   even the version; a container owned under another attempt rejects the group;
--   otherwise the status is available or pending and the containers not owned yet fit the
--   free capacity. Then free capacity is subtracted,
--   the version bumped, each new container recorded in the owned hash as
--   `attempt cpu mem gpu` and appended to the assignment stream. A container listed twice
--   is reserved once. Malformed arguments or stored data: an error reply, nothing written.

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
local reservations = {}
for i = 1, n do
  local at = 4 + (i - 1) * 6
  local r = {
    container = ARGV[at + 1],
    attempt = ARGV[at + 2],
    cpu = uint(ARGV[at + 3]),
    mem = uint(ARGV[at + 4]),
    gpu = uint(ARGV[at + 5]),
    payload = ARGV[at + 6],
  }
  if r.container == '' or not string.match(r.attempt, '^%S+$') then
    return invalid('reservation ' .. i .. ': container or attempt')
  end
  if r.cpu == nil or r.mem == nil or r.gpu == nil then
    return invalid('reservation ' .. i .. ': resources')
  end
  reservations[i] = r
end

-- 2. Stored state, read and checked before any write.
local worker = load_worker(worker_key)
if worker == nil then
  return { 'unknown' }
end
local cap, err = read_capacity(worker_key, worker)
if err then
  return err
end
local status, status_err = read_status(worker_key, worker)
if status_err then
  return status_err
end
local stream_type = redis.call('TYPE', assign_key).ok
if stream_type ~= 'stream' and stream_type ~= 'none' then
  return corrupt(assign_key, 'type', 'is ' .. stream_type .. ', not a stream')
end
if mode == 'locked' then
  if redis.call('GET', KEYS[4]) ~= ARGV[2] then
    return { 'lock_lost', worker.flat }
  end
  if cap.version ~= expected then
    return { 'version_conflict', worker.flat }
  end
end
-- 3. Split into already owned (an idempotent retry) and new reservations.
local containers = {}
for i, r in ipairs(reservations) do
  containers[i] = r.container
end
local owned = hmget_all(owned_key, containers)
local fresh, already, seen = {}, {}, {}
local cpu, mem, gpu = 0, 0, 0
for i, r in ipairs(reservations) do
  if owned[i] then
    local entry = parse_owned(owned[i])
    if entry == nil then
      return corrupt(owned_key, r.container, owned_problem(owned[i]))
    end
    if entry.attempt ~= r.attempt then
      -- Held under another attempt (about to be released or adopted): not a retry.
      return { 'owned_elsewhere', worker.flat }
    end
    already[#already + 1] = r.container
    already[#already + 1] = entry.attempt
  elseif not seen[r.container] then
    seen[r.container] = true
    fresh[#fresh + 1] = r
    cpu, mem, gpu = cpu + r.cpu, mem + r.mem, gpu + r.gpu
  end
end
if #fresh == 0 then
  -- A retry of a commit that already happened: nothing to write, whatever the status.
  return { 'ok', worker.flat, already }
end
if status ~= 'available' and status ~= 'pending' then
  return { 'not_accepting', worker.flat }
end
if cpu > cap.free_cpu or mem > cap.free_mem or gpu > cap.free_gpu then
  return { 'no_room', worker.flat }
end

-- 4. Writes.
local changes = {
  free_cpu = str(cap.free_cpu - cpu),
  free_mem = str(cap.free_mem - mem),
  free_gpu = str(cap.free_gpu - gpu),
  version = str(cap.version + 1),
}
redis.call('HSET', worker_key, 'free_cpu', changes.free_cpu, 'free_mem', changes.free_mem,
  'free_gpu', changes.free_gpu, 'version', changes.version)
local entries = {}
for _, r in ipairs(fresh) do
  entries[#entries + 1] = r.container
  entries[#entries + 1] = format_owned(r.attempt, r.cpu, r.mem, r.gpu)
end
hset_all(owned_key, entries)
for _, r in ipairs(fresh) do
  redis.call('XADD', assign_key, '*',
    'container', r.container, 'attempt', r.attempt,
    'cpu', str(r.cpu), 'mem', str(r.mem), 'gpu', str(r.gpu), 'payload', r.payload)
end
return { 'ok', with_changes(worker, changes), already }
