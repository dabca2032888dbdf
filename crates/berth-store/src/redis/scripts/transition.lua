-- berth: move a container record forward (mirrors crate::lifecycle::apply exactly).
--
-- KEYS: 1 record hash `P:{q}:c:ID`.
-- ARGV: 1 kind: scheduled, running, exited, failed or lost; 2 worker; 3 attempt;
--       4 exit code (exited); 5 reason (failed, lost); 6 now, ms since the epoch.
-- Reply: {'unknown'} | {'ok', record} (the record hash after the move) |
--        {'refused', state, why}.
-- Guarantee: atomic; states only move forward. Scheduled from pending (again by the same
--   worker and attempt: a no-op); Running from scheduled and Exited from running, only by
--   the worker and attempt the record holds (repeating: a no-op); Failed from any
--   non-terminal state; Lost from scheduled or running.

local key = KEYS[1]
local kind, worker, attempt, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local now = uint(ARGV[6])
local kinds = { scheduled = true, running = true, exited = true, failed = true, lost = true }
if #ARGV ~= 6 or not kinds[kind] or now == nil then
  return invalid('transition arguments')
end
local by_worker = kind == 'scheduled' or kind == 'running' or kind == 'exited'
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

local why
if kind == 'scheduled' then
  why = schedule(key, record, worker, attempt, now)
elseif kind == 'running' or kind == 'exited' then
  if not holds(record, worker, attempt) then
    why = 'worker ' .. worker .. ' attempt ' .. attempt .. ' does not hold it'
  elseif kind == 'running' then
    if state == 'scheduled' then
      redis.call('HSET', key, 'state', 'running', 'started_ms', str(now))
    elseif state ~= 'running' then
      why = 'only a scheduled container can start, it is ' .. state
    end
  else
    if state == 'running' then
      redis.call('HSET', key, 'state', 'exited', 'exit_code', str(code), 'finished_ms', str(now))
    elseif not (state == 'exited' and int(redis.call('HGET', key, 'exit_code')) == code) then
      why = 'only a running container can exit, it is ' .. state
    end
  end
elseif kind == 'failed' then
  if TERMINAL[state] and state ~= 'failed' then
    why = 'it already ended as ' .. state
  elseif state ~= 'failed' then
    finish(key, record, 'failed', reason, now)
  end
else
  if state == 'scheduled' or state == 'running' then
    finish(key, record, 'lost', reason, now)
  elseif state ~= 'lost' then
    why = 'only a scheduled or running container can be lost, it is ' .. state
  end
end
if why then
  return { 'refused', state, why }
end
return { 'ok', redis.call('HGETALL', key) }
