-- slots.lua: take one of a bucket's concurrency slots for a holder (`ResultBackend.take_slot`;
-- the rules: forkq/engines/contract/limits.py). Taking is re-entrant: a holder that holds a
-- slot takes it again, its lease starting over. When every slot is held by others, the
-- holder's back-off doubles (from `first`, up to `most`) and comes back spread by the jitter.
--
-- Times are the server's (TIME), in microseconds.
--
-- KEYS[1]  {prefix:slots:T}:held:K        sorted set: member = holder (a task id), score = the
--                                         end of its lease (us); expires with the latest lease
-- KEYS[2]  {prefix:slots:T}:backoff:H:K   holder H's latest back-off, un-jittered (us),
--                                         forgotten `kept` ms after it was set, or when H takes
--          (both share the hash tag {prefix:slots:T}: one slot on Redis Cluster)
-- ARGV[1]  holder   ARGV[2]  limit   ARGV[3]  lease (us)
-- ARGV[4]  first back-off (us)   ARGV[5]  most (us)   ARGV[6]  jitter, in [0, 1)
-- ARGV[7]  kept (ms)
--
-- Returns 0 when taken, else the back-off in microseconds (at least 1). A stored back-off that
-- is not a whole number of decimal digits from `first` to `most` reads as none.
local holder, limit, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", "(" .. text(now))
if redis.call("ZSCORE", KEYS[1], holder) or redis.call("ZCARD", KEYS[1]) < limit then
  redis.call("ZADD", KEYS[1], text(now + lease), holder)
  local ttl = math.floor(lease / 1000) + 1000
  if redis.call("PTTL", KEYS[1]) < ttl then
    redis.call("PEXPIRE", KEYS[1], ttl)
  end
  redis.call("DEL", KEYS[2])
  return 0
end

local first, most, jitter = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local previous = whole(redis.call("GET", KEYS[2]))
local base = first
if previous and previous >= first and previous <= most then
  base = math.min(most, previous * 2)
end
redis.call("SET", KEYS[2], text(base), "PX", ARGV[7])
return math.max(1, math.floor(base * (0.5 + 0.5 * jitter)))  -- never 0: that means taken
