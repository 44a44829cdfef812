-- lease_release.lua: give a lease up, only if the caller holds it (compare and delete).
--
-- KEYS[1]  prefix:lease:<name>   (see lease_hold.lua)
-- ARGV     holder id
-- Returns  1 when released, else 0

if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
