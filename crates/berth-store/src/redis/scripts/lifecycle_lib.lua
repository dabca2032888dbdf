-- berth: the container state machine's step, for the scripts that move records by it;
-- prepended after intake_lib.lua and the table, which the store renders from
-- berth_core::lifecycle::cell when it assembles the script:
--   LIFECYCLE[state][kind] = { {guard, outcome, arg}, ... }: the first arm whose guard holds
--     decides; outcome 'allowed' (arg: the next state), 'idempotent' (arg ''), or 'refused'
--     (arg: the refusal's name).
--   REFUSALS[name] = the refusal's message, with {state}, {worker} and {attempt} in it.

-- What the table's guards read, by guard name: whether the transition comes from the
-- record's holder, whether its attempt was revoked, whether its exit code is the record's.
local function facts(holder, revoked_attempt, same_exit_code)
  return {
    always = true,
    holder = holder,
    not_holder = not holder,
    revoked = revoked_attempt,
    same_exit_code = same_exit_code,
  }
end

-- The outcome of `kind` on a record in `state` by the table: 'allowed', next state |
-- 'idempotent' | 'refused', why. `facts` is what `facts` returns.
local function decide(state, kind, holds_guard, worker, attempt)
  for _, arm in ipairs(LIFECYCLE[state][kind]) do
    if holds_guard[arm[1]] then
      if arm[2] == 'refused' then
        local values = { state = state, worker = worker, attempt = attempt }
        return 'refused', (string.gsub(REFUSALS[arm[3]], '{(%a+)}', values))
      end
      return arm[2], arm[3]
    end
  end
  return 'refused', 'the state machine has no arm for ' .. kind .. ' from ' .. state
end
