-- berth: commit one group of reservations on one worker, lock-free or under the worker's lock
-- (the work itself is commit_group, in commit_lib.lua).
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`, 2 owned hash `P:{w:ID}:owned`,
--       3 assignment stream `P:{w:ID}:assign`, 4 lock `P:{w:ID}:lock` (mode `locked` only).
-- ARGV: 1 mode, `free` or `locked`; 2 the lock token (`locked`; else ignored);
--       3 the expected version (`locked`; else ignored); 4 the number n of reservations;
--       then n times: container, attempt, cpu, mem, gpu, devices (`index:milli,...`, ''
--       without GPUs), payload JSON.
-- Reply: {'unknown'} when the worker is not registered; else {outcome, worker} or
--        {'ok', worker, already}, where worker is the worker's state after the call: the
--        worker hash as a flat field/value list (worker_reply, worker_lib.lua), already
--        lists {container, attempt, ...} the worker owned before (not reserved again) and
--        outcome is 'lock_lost', 'version_conflict', 'owned_elsewhere' (a container is
--        owned under another attempt), 'not_accepting' or 'no_room'.
-- Guarantee: all or nothing. The checks run in this order: worker exists, (locked: the lock
--   holds the token, the version is the expected one); if every container is owned already
--   under the same attempt (a retried commit) the reply is 'ok' and nothing is written, not
--   even the version; a container owned under another attempt rejects the group;
--   otherwise the status is available or pending and the containers not owned yet fit the
--   free capacity, and their device shares fit the devices (`gpu_free`: a share only on a
--   listed device, their sum on a device at most what it has free, so a whole share needs a
--   wholly free device and never shares it). Then free capacity and the shares are
--   subtracted (the free GPU count becomes the wholly free devices), the version bumped,
--   each new container recorded in the owned hash as `attempt cpu mem gpu [devices]` and
--   appended to the assignment stream with its devices. A container listed twice
--   is reserved once. Malformed arguments or stored data: an error reply, nothing written
--   (the assignment stream's type is checked by the first append, which comes before any
--   other write and fails alone).

local mode = ARGV[1]
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
if n == nil or #ARGV ~= 4 + 7 * n then
  return invalid('reservation count ' .. tostring(ARGV[4]) .. ' for ' .. #ARGV .. ' arguments')
end
return commit_group(KEYS, ARGV, 4, mode, ARGV[2], expected)
