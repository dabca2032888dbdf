-- berth: release a worker's lock if it still holds our token (compare and delete).
--
-- KEYS: 1 worker hash `P:{w:ID}:worker`, 2 lock `P:{w:ID}:lock`.
-- ARGV: 1 the token.
-- Reply: {'unknown'} | {'released'} | {'not_held'} (expired, or taken by someone else).

if #ARGV ~= 1 or ARGV[1] == '' then
  return invalid('lock token')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'unknown' }
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  return { 'released' }
end
return { 'not_held' }
