-- berth: give a container's capacity back to its worker.
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`, 2 owned hash `P:{w:ID}:owned`,
--       3 assignment stream `P:{w:ID}:assign`.
-- ARGV: 1 container, 2 attempt ('' = whichever attempt owns it), 3 the agent's epoch
--       ('' = not fenced: the scheduler's own release).
-- Reply: {'unknown'} | {'stale', current epoch} | {'not_owned'} |
--        {'released', cpu, mem, gpu, worker} where worker is the worker's state after the
--        release: the worker hash as a flat field/value list (worker_reply, worker_lib.lua).
-- Guarantee: idempotent and atomic; fenced: nothing is written under a stale epoch. Only a
--   container owned (under `attempt`, if given) is released: its entry is removed, its
--   assignment entries (undelivered or unacknowledged) are dropped, free credited back
--   (with its device shares, to exactly those devices; the free GPU count becomes the
--   wholly free devices) and the version bumped. If the credit would raise free above total, an error reply
--   (corruption) and nothing written.

local worker_key, owned_key, assign_key = KEYS[1], KEYS[2], KEYS[3]
local container, attempt = ARGV[1], ARGV[2]
if #ARGV ~= 3 or container == '' then
  return invalid('release arguments')
end
local worker = load_worker(worker_key)
if worker == nil then
  return { 'unknown' }
end
local cap, err = read_worker(worker_key, worker)
local stale = stale_epoch(worker_key, ARGV[3])
if stale then
  return stale
end
local owned = redis.call('HGET', owned_key, container)
if not owned then
  return { 'not_owned' }
end
local entry = parse_owned(owned)
if entry == nil then
  return corrupt(owned_key, container, owned_problem(owned))
end
if attempt ~= '' and attempt ~= entry.attempt then
  return { 'not_owned' }
end
if err then
  return err
end
local cpu, mem, gpu = cap.free_cpu + entry.cpu, cap.free_mem + entry.mem, cap.free_gpu + entry.gpu
if cpu > cap.total_cpu or mem > cap.total_mem or gpu > cap.total_gpu then
  return corrupt(worker_key, 'free', 'releasing ' .. container .. ' would raise free above total')
end
if #entry.devices > 0 then
  -- Exactly the shares the entry holds go back to their devices.
  local free, bad = read_device_free(worker_key, worker)
  if bad then
    return bad
  end
  local credited = move_shares(free, entry.devices, 1, false)
  if credited == nil then
    return corrupt(worker_key, 'gpu_free', 'releasing ' .. container .. ' would raise a device above the whole')
  end
  gpu = whole_devices(credited)
  worker.gpu_free = format_devices(credited)
  redis.call('HSET', worker_key, 'gpu_free', worker.gpu_free)
end
worker.free_cpu, worker.free_mem, worker.free_gpu = str(cpu), str(mem), str(gpu)
worker.version = str(cap.version + 1)
redis.call('HDEL', owned_key, container)
drop_assignments(assign_key, container, entry.attempt)
redis.call('HSET', worker_key, 'free_cpu', worker.free_cpu, 'free_mem', worker.free_mem,
  'free_gpu', worker.free_gpu, 'version', worker.version)
return { 'released', str(entry.cpu), str(entry.mem), str(entry.gpu), worker_reply(worker) }
