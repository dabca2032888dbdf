-- berth: one worker's commit, shared by commit.lua and commit_many.lua; prepended after
-- worker_lib.lua.

-- Commits one group on one worker. `keys`: worker hash, owned hash, assignment stream, and
-- (mode `locked` only) the lock. `argv[base]` is the number n of reservations, followed by
-- n times: container, attempt, cpu, mem, gpu, devices (`index:milli,...`, '' for none),
-- payload JSON. `token` and `expected` are the
-- lock token and the expected version (mode `locked`; else nil). Returns the group's reply
-- as commit.lua documents it, or an error reply (a table with `err`); nothing is written
-- unless every check passed (see commit.lua's guarantee).
local function commit_group(keys, argv, base, mode, token, expected)
  local worker_key, owned_key, assign_key = keys[1], keys[2], keys[3]
  -- 1. Arguments.
  local n = uint(argv[base])
  if n == nil or #argv < base + 7 * n then
    return invalid('reservation count ' .. tostring(argv[base]) .. ' for ' .. #argv .. ' arguments')
  end
  local containers, res = {}, {}
  for i = 1, n do
    local at = base + (i - 1) * 7
    local container, attempt = argv[at + 1], argv[at + 2]
    local cpu, mem, gpu = uint(argv[at + 3]), uint(argv[at + 4]), uint(argv[at + 5])
    local devices = parse_devices(argv[at + 6], 1)
    if container == '' or not string.find(attempt, '^%S+$') then
      return invalid('reservation ' .. i .. ': container or attempt')
    end
    if cpu == nil or mem == nil or gpu == nil or devices == nil then
      return invalid('reservation ' .. i .. ': resources or devices')
    end
    containers[i] = container
    res[i] = { cpu, mem, gpu, devices }
  end

  -- 2. Stored state, read and checked before any write.
  local worker = load_worker(worker_key)
  if worker == nil then
    return { 'unknown' }
  end
  local cap, err = read_worker(worker_key, worker)
  if err then
    return err
  end
  if mode == 'locked' then
    if redis.call('GET', keys[4]) ~= token then
      return { 'lock_lost', worker_reply(worker) }
    end
    if cap.version ~= expected then
      return { 'version_conflict', worker_reply(worker) }
    end
  end
  -- 3. Split into already owned (an idempotent retry) and new reservations.
  local owned = hmget_all(owned_key, containers)
  local fresh, already, seen = {}, {}, {}
  local cpu, mem, gpu, shares = 0, 0, 0, {}
  for i = 1, n do
    local container = containers[i]
    if owned[i] then
      local entry = parse_owned(owned[i])
      if entry == nil then
        return corrupt(owned_key, container, owned_problem(owned[i]))
      end
      if entry.attempt ~= argv[base + (i - 1) * 7 + 2] then
        -- Held under another attempt (about to be released or adopted): not a retry.
        return { 'owned_elsewhere', worker_reply(worker) }
      end
      already[#already + 1] = container
      already[#already + 1] = entry.attempt
    elseif not seen[container] then
      seen[container] = true
      fresh[#fresh + 1] = i
      local r = res[i]
      cpu, mem, gpu = cpu + r[1], mem + r[2], gpu + r[3]
      for _, share in ipairs(r[4]) do
        shares[#shares + 1] = share
      end
    end
  end
  if #fresh == 0 then
    -- A retry of a commit that already happened: nothing to write, whatever the status.
    return { 'ok', worker_reply(worker), already }
  end
  if cap.status ~= 'available' and cap.status ~= 'pending' then
    return { 'not_accepting', worker_reply(worker) }
  end
  if cpu > cap.free_cpu or mem > cap.free_mem or gpu > cap.free_gpu then
    return { 'no_room', worker_reply(worker) }
  end
  -- The device shares: each on a bookable device with room (a whole share needs a wholly
  -- free device), summed over the group.
  local device_free = nil
  if #shares > 0 then
    local free, bad = read_device_free(worker_key, worker)
    if bad then
      return bad
    end
    device_free = move_shares(free, shares, -1, true)
    if device_free == nil then
      return { 'no_room', worker_reply(worker) }
    end
  end

  -- 4. Writes. The first append goes first: it is what finds a stream key of another type,
  -- and it fails alone.
  local entries = {}
  for k, i in ipairs(fresh) do
    local at = base + (i - 1) * 7
    -- A reservation without devices (most) carries no `devices` field: one pair less for
    -- every booking to write and for the stream to keep.
    local added
    if argv[at + 6] == '' then
      added = redis.pcall('XADD', assign_key, '*', 'container', argv[at + 1],
        'attempt', argv[at + 2], 'cpu', argv[at + 3], 'mem', argv[at + 4], 'gpu', argv[at + 5],
        'payload', argv[at + 7])
    else
      added = redis.pcall('XADD', assign_key, '*', 'container', argv[at + 1],
        'attempt', argv[at + 2], 'cpu', argv[at + 3], 'mem', argv[at + 4], 'gpu', argv[at + 5],
        'devices', argv[at + 6], 'payload', argv[at + 7])
    end
    if type(added) == 'table' and added.err then
      if k == 1 then
        return corrupt(assign_key, 'type', 'is not a stream: ' .. added.err)
      end
      return redis.error_reply(added.err)
    end
    entries[2 * k - 1] = argv[at + 1]
    -- The resources as sent: step 1 checked that they are plain decimal integers.
    entries[2 * k] = argv[at + 2] .. ' ' .. argv[at + 3] .. ' ' .. argv[at + 4] .. ' ' .. argv[at + 5]
    if argv[at + 6] ~= '' then
      entries[2 * k] = entries[2 * k] .. ' ' .. argv[at + 6]
    end
  end
  hset_all(owned_key, entries)
  local free_cpu, free_mem = str(cap.free_cpu - cpu), str(cap.free_mem - mem)
  local free_gpu, version = str(cap.free_gpu - gpu), str(cap.version + 1)
  if device_free then
    -- Fractions that break into a wholly free device take it from the free count too.
    free_gpu = str(whole_devices(device_free))
    worker.gpu_free = format_devices(device_free)
    redis.call('HSET', worker_key, 'gpu_free', worker.gpu_free)
  end
  redis.call('HSET', worker_key, 'free_cpu', free_cpu, 'free_mem', free_mem, 'free_gpu',
    free_gpu, 'version', version)
  worker.free_cpu, worker.free_mem, worker.free_gpu = free_cpu, free_mem, free_gpu
  worker.version = version
  return { 'ok', worker_reply(worker), already }
end
