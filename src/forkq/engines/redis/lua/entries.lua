-- entries.lua: reading what anyone may have written into a queue's keys (`XADD` into a band
-- stream, `ZADD` into the delayed set). forkq.engines.redis.link puts this text before each script
-- (fetch, settle, release), so these functions are local to the script that runs.
--
-- Nothing read is trusted: a number must be an integer written in decimal digits (Lua's
-- tonumber also takes "nan", "inf", "0x10" and " 5 "), a priority is clamped to 0-9, a start
-- count to 0-1000000 (junk counts as 0), and an entry without a body is dead-lettered with a
-- reason, never run and never an error that stops the script for every later call.

local MAX_STARTS = 1000000

-- An integer in decimal digits (an optional minus sign first), or nil.
local function integer(raw)
  if type(raw) ~= "string" or #raw > 30 or not string.find(raw, "^%-?%d+$") then return nil end
  return tonumber(raw)
end

local function clamp(n, low, high)
  return math.min(high, math.max(low, n))
end

-- Times started before: junk counts as 0.
local function starts_of(raw)
  local n = integer(raw)
  if n == nil then return 0 end
  return clamp(n, 0, MAX_STARTS)
end

-- A priority 0-9; `default` when junk.
local function priority_of(raw, default)
  local n = integer(raw)
  if n == nil then return default end
  return clamp(n, 0, 9)
end

-- A stream entry's flat field list as a table (the first of repeated fields wins).
local function fields_of(flat)
  local fields = {}
  for f = 1, #flat - 1, 2 do
    if fields[flat[f]] == nil then fields[flat[f]] = flat[f + 1] end
  end
  return fields
end

-- Bytes anyone wrote, quoted for a reason: at most 40, anything but printable ASCII as "?".
local function shown(raw)
  local text = (string.gsub(string.sub(raw, 1, 40), "[^%w%p ]", "?"))
  if #raw > 40 then text = text .. "..." end
  return '"' .. text .. '"'
end

-- A delayed member "<nonce>|<priority>|<starts>|<body>", read: { priority (0-9), starts,
-- body }, or { kept = the bytes to keep as its dead letter's body, reason = why it cannot run }.
local function parse_member(member)
  local a = string.find(member, "|", 1, true)
  local b = a and string.find(member, "|", a + 1, true)
  local c = b and string.find(member, "|", b + 1, true)
  if c == nil then
    return { kept = member, reason = "malformed delayed entry: not "
      .. "<nonce>|<priority>|<starts>|<body>: " .. shown(member) }
  end
  local body = string.sub(member, c + 1)
  local raw_priority = string.sub(member, a + 1, b - 1)
  local priority = integer(raw_priority)
  if priority == nil then
    return { kept = body, reason = "malformed delayed entry: priority " .. shown(raw_priority)
      .. " is not an integer" }
  end
  if body == "" then
    return { kept = member, reason = "malformed delayed entry: empty body" }
  end
  return { priority = clamp(priority, 0, 9), starts = starts_of(string.sub(member, b + 1, c - 1)),
           body = body }
end

-- The reason a stream entry without a body is dead-lettered, naming the fields it has.
local function no_body_reason(flat)
  local names = {}
  for f = 1, math.min(#flat, 10), 2 do table.insert(names, shown(flat[f])) end
  local has = #names > 0 and ("; its fields: " .. table.concat(names, ", ")) or "; no fields"
  if #flat > 10 then has = has .. ", ..." end
  return "malformed stream entry: no body (field b)" .. has
end

-- A dead letter, with the fields settle.lua gives every dead letter: the one place letters are
-- added. CAPS = { most letters kept, oldest kept in ms }, each "0" for no cap (the broker's
-- DeadLetterCaps, passed by every script that may add one): exact trimming, so each letter
-- added removes about one (MAXLEN), and the entries older than the age (MINID: entry ids
-- begin with the time they were added in ms).
local function add_dead(key, body, reason, now, priority, caps)
  local most, age = tonumber(caps[1]), tonumber(caps[2])
  if most > 0 then
    redis.call("XADD", key, "MAXLEN", most, "*", "b", body, "r", reason, "t", now, "p", priority)
  else
    redis.call("XADD", key, "*", "b", body, "r", reason, "t", now, "p", priority)
  end
  if age > 0 then
    redis.call("XTRIM", key, "MINID", string.format("%.0f", tonumber(now) - age))
  end
end

