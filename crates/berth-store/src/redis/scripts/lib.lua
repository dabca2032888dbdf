-- berth: helpers shared by every script; prepended to each script's body at build time.
--
-- Numbers cross the Lua boundary as decimal strings. Lua numbers are doubles, exact up to
-- 2^53 - 1, so every quantity is kept at or below that (the client refuses larger ones).
-- Error replies start with the code BERTH, then `invalid <what>` (a malformed argument) or
-- `corrupt <key> <field> <problem>` (stored data that cannot be read). Every script checks
-- all its arguments and everything it reads BEFORE its first write: Lua does not roll back.

local MAX_INT = 9007199254740991

-- A non-negative integer from a decimal string, or nil.
local function uint(s)
  if type(s) ~= 'string' or #s == 0 or #s > 16 or not string.match(s, '^%d+$') then
    return nil
  end
  local n = tonumber(s)
  if n == nil or n > MAX_INT then
    return nil
  end
  return n
end

-- A signed integer from a decimal string, or nil.
local function int(s)
  if type(s) ~= 'string' then
    return nil
  end
  if string.sub(s, 1, 1) == '-' then
    local n = uint(string.sub(s, 2))
    if n == nil then
      return nil
    end
    return -n
  end
  return uint(s)
end

-- An integer as a decimal string (never in exponent notation).
local function str(n)
  return string.format('%d', n)
end

local function invalid(what)
  return redis.error_reply('BERTH invalid ' .. what)
end

local function corrupt(key, field, problem)
  return redis.error_reply('BERTH corrupt ' .. key .. ' ' .. field .. ' ' .. problem)
end

-- A stream entry id `ms-seq`.
local function is_entry_id(s)
  return type(s) == 'string' and string.match(s, '^%d+%-%d+$') ~= nil
end

-- Creates a stream's consumer group (and the stream) unless it exists.
local function ensure_group(stream, group)
  local reply = redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
  if type(reply) == 'table' and reply.err ~= nil and not string.find(reply.err, 'BUSYGROUP', 1, true) then
    return reply
  end
  return nil
end
