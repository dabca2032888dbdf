-- berth: read every charge and every tenant's usage together, for the invariant check.
--
-- KEYS: 1 charges hash `P:{q}:charges`, 2 usage hash `P:{q}:usage`.
-- ARGV: none.
-- Reply: {charges as HGETALL, usage as HGETALL}.
-- Guarantee: one atomic read: the usage is the one the charges add up to, unless an
--   invariant is broken.

return { redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]) }
