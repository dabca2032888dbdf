-- berth: move a container record forward, by the state machine's table (LIFECYCLE, rendered
-- from berth_core::lifecycle::cell, the table the memory store follows too).
--
-- KEYS: 1 record hash `P:{q}:c:ID`.
-- ARGV: 1 kind: scheduled, pulling, running, exited, failed or lost; 2 worker; 3 attempt;
--       4 exit code (exited); 5 reason (failed, lost); 6 now, ms since the epoch.
-- Reply: {'unknown'} | {'ok', record} (the record hash after the move) |
--        {'refused', state, why}.
-- Guarantee: atomic; states only move forward, as the table says: scheduled from pending
--   (not by a revoked attempt; again by the same worker and attempt: a no-op); pulling from
--   scheduled, running from scheduled or pulling, and exited from running, only by the
--   worker and attempt the record holds (repeating: a no-op; pulling once running: a no-op);
--   failed from any non-terminal state; lost from scheduled, pulling or running.
--   An allowed move also writes what the transition brings: worker, attempt and
--   scheduled_ms (and drops the reason); started_ms; exit_code and finished_ms; reason and
--   finished_ms. A move to an end gives the container's charge to its tenant back.

local key = KEYS[1]
local kind, worker, attempt, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local now = uint(ARGV[6])
local kinds = {
  scheduled = true, pulling = true, running = true, exited = true, failed = true, lost = true,
}
if #ARGV ~= 6 or not kinds[kind] or now == nil then
  return invalid('transition arguments')
end
local by_worker = kind == 'scheduled' or kind == 'pulling' or kind == 'running'
  or kind == 'exited'
if by_worker and (worker == '' or attempt == '') then
  return invalid('a ' .. kind .. ' transition needs a worker and an attempt')
end
local code = int(ARGV[4])
if kind == 'exited' and code == nil then
  return invalid('exit code ' .. tostring(ARGV[4]))
end
if redis.call('EXISTS', key) == 0 then
  return { 'unknown' }
end
local record, err = read_record(key)
if err then
  return err
end
if not record.state then
  return corrupt(key, 'state', 'is missing')
end
local state = record.state

local stored = redis.call('HMGET', key, 'revoked', 'exit_code')
local holder = by_worker and holds(record, worker, attempt)
local known = facts(holder, by_worker and revoked(stored[1], attempt),
  kind == 'exited' and int(stored[2]) == code)
local outcome, arg = decide(state, kind, known, worker, attempt)
if outcome == 'refused' then
  return { 'refused', state, arg }
end
if outcome == 'allowed' then
  if kind == 'scheduled' then
    redis.call('HSET', key, 'state', arg, 'worker', worker, 'attempt', attempt,
      'scheduled_ms', str(now))
    redis.call('HDEL', key, 'reason')
  elseif kind == 'pulling' then
    redis.call('HSET', key, 'state', arg)
  elseif kind == 'running' then
    redis.call('HSET', key, 'state', arg, 'started_ms', str(now))
  elseif kind == 'exited' then
    redis.call('HSET', key, 'state', arg, 'exit_code', str(code), 'finished_ms', str(now))
    uncharge(key, record_id(key))
  else
    finish(key, record, arg, reason, now)
  end
end
return { 'ok', redis.call('HGETALL', key) }
