-- purge.lua: delete every message of one queue that no consumer holds (waiting and delayed).
--
-- KEYS[1..4] {prefix:queue}:b3 .. b0   KEYS[5] {prefix:queue}:delayed
-- ARGV[1] group
--
-- Returns the number deleted.
local deleted = redis.call("ZCARD", KEYS[5])
redis.call("DEL", KEYS[5])
for k = 1, 4 do
  local held = {}
  for _, p in ipairs(redis.call("XPENDING", KEYS[k], ARGV[1], "-", "+", 1000000)) do
    held[p[1]] = true
  end
  for _, entry in ipairs(redis.call("XRANGE", KEYS[k], "-", "+")) do
    if not held[entry[1]] then
      redis.call("XDEL", KEYS[k], entry[1])
      deleted = deleted + 1
    end
  end
end
return deleted
