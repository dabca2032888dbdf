-- berth: the unmet demand, read from the backlog and its records (read-only).
--
-- KEYS: 1 backlog zset `P:{q}:backlog`.
-- ARGV: 1 record key prefix `P:{q}:c:`.
-- Reply: {{pool, gpu type, cpu, mem, gpu}, ...} one per waiting container whose record is
--        pending and readable ('' for no pool or no GPU type); {'bad', id, problem} entries
--        for records that cannot be read.
-- Guarantee: read-only. Record keys are derived as prefix .. id: allowed only because
--   check_prefix verifies they share the backlog key's hash tag, so its slot.

local backlog, prefix = KEYS[1], ARGV[1]
if #ARGV ~= 1 then
  return invalid('demand arguments')
end
local prefix_err = check_prefix(backlog, prefix)
if prefix_err then
  return prefix_err
end
-- A decoded JSON quantity: a non-negative whole number.
local function quantity(n)
  return type(n) == 'number' and n >= 0 and n == math.floor(n) and n <= MAX_INT
end

local out = {}
for _, id in ipairs(redis.call('ZRANGE', backlog, 0, -1)) do
  local r = redis.call('HMGET', prefix .. id, 'state', 'request', 'demand_pool', 'demand_gpu')
  if r[1] == 'pending' then
    local ok, request = pcall(cjson.decode, r[2] or '')
    local res = ok and type(request) == 'table' and request.resources
    if type(res) == 'table' and quantity(res.cpu_millicores) and quantity(res.memory_mib)
        and quantity(res.gpu_count) then
      out[#out + 1] = { r[3] or '', r[4] or '', str(res.cpu_millicores),
        str(res.memory_mib), str(res.gpu_count) }
    else
      out[#out + 1] = { 'bad', id, 'the stored request has no readable resources' }
    end
  end
end
return out
