-- berth: acknowledge a delivered assignment, so it is not delivered again.
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`, 2 assignment stream `P:{w:ID}:assign`.
-- ARGV: 1 the delivery (stream entry id), 2 the agent's epoch ('' = not fenced).
-- Reply: {'unknown'} | {'stale', current epoch} | {'ok'}.
-- Guarantee: atomic; fenced: nothing is written under a stale epoch. XACK in the group
--   `agent`, then XDEL, so the stream only holds what is still to be acknowledged.
--   Acknowledging twice, or an unknown delivery, changes nothing.

if #ARGV ~= 2 or not is_entry_id(ARGV[1]) then
  return invalid('delivery id ' .. tostring(ARGV[1]))
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'unknown' }
end
local stale = stale_epoch(KEYS[1], ARGV[2])
if stale then
  return stale
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('XACK', KEYS[2], 'agent', ARGV[1])
  redis.call('XDEL', KEYS[2], ARGV[1])
end
return { 'ok' }
