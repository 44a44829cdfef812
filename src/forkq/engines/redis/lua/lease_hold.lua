-- lease_hold.lua: take a lease no one holds, or renew one the caller holds (the periodic
-- schedulers' leader election: the holder renews it every third of its time to live).
--
-- KEYS[1]  prefix:lease:<name>   string: the holder's id, expiring with the lease
-- ARGV     holder id, time to live in ms
-- Returns  1 when the caller holds the lease now, else 0

if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
  return 1
end
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return 1
end
return 0
