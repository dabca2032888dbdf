-- berth: take a worker's next assignments without blocking.
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`, 2 assignment stream `P:{w:ID}:assign`.
-- ARGV: 1 consumer (the worker id), 2 redelivery timeout in ms, 3 max (at least 1),
--       4 the agent's epoch ('' = not fenced).
-- Reply: {'unknown'} | {'stale', current epoch} | {'ok', entries} where entries are stream entries {id, {field, value,
--        ...}} in stream (commit) order: first those delivered before and not acknowledged
--        for the redelivery timeout (XAUTOCLAIM), then new ones (XREADGROUP), at most max.
-- Guarantee: fenced: nothing is delivered under a stale epoch. At-least-once delivery: an entry stays pending in the group `agent` until
--   acknowledged. Creates the group (id 0) if it went missing, so no entry is skipped.

local worker_key, assign_key = KEYS[1], KEYS[2]
local idle, max = uint(ARGV[2]), uint(ARGV[3])
if #ARGV ~= 4 or ARGV[1] == '' or idle == nil or max == nil or max < 1 then
  return invalid('deliver arguments')
end
if redis.call('EXISTS', worker_key) == 0 then
  return { 'unknown' }
end
local stale = stale_epoch(worker_key, ARGV[4])
if stale then
  return stale
end
local group_err = ensure_group(assign_key, 'agent')
if group_err then
  return group_err
end
local entries = {}
local reclaimed = redis.call('XAUTOCLAIM', assign_key, 'agent', ARGV[1], ARGV[2], '0-0',
  'COUNT', ARGV[3])
for _, entry in ipairs(reclaimed[2]) do
  if entry and entry[2] then
    entries[#entries + 1] = entry
  end
end
if #entries < max then
  local fresh = redis.call('XREADGROUP', 'GROUP', 'agent', ARGV[1], 'COUNT',
    str(max - #entries), 'STREAMS', assign_key, '>')
  if fresh then
    for _, entry in ipairs(fresh[1][2]) do
      entries[#entries + 1] = entry
    end
  end
end
return { 'ok', entries }
