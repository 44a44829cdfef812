-- revoke.lua: revoke task ids (`ResultBackend.revoke`; the rules:
-- forkq/engines/contract/revocations.py). Each id gets the next number of the sequence and
-- an expiry (an id revoked again: a new number and expiry); then the expired revocations go,
-- and the oldest beyond the cap.
--
-- KEYS[1]  {prefix:revoked}:order   sorted set: member = a task id, score = its number
-- KEYS[2]  {prefix:revoked}:until   sorted set: member = a task id, score = its expiry (ms)
-- KEYS[3]  {prefix:revoked}:seq     the latest number given (INCR)
-- KEYS[4]  {prefix:revoked}:epoch   the sequence's epoch: a token set with its number 1
--          (all four share the hash tag {prefix:revoked}: one slot on Redis Cluster)
-- ARGV[1]  now (ms)   ARGV[2]  the expiry (ms)   ARGV[3]  the cap
-- ARGV[4]  a new random token, the epoch should the sequence start here
-- ARGV[5..]  the task ids
--
-- The two sets expire with the latest revocation; the sequence and its epoch never do. A
-- sequence that starts again (a server restarted without its data) starts a new epoch, so a
-- reader whose cursor it passes before the reader looks still reads everything again.
-- Returns the latest number.
local seq = 0
for i = 5, #ARGV do
  seq = redis.call("INCR", KEYS[3])
  if seq == 1 then
    redis.call("SET", KEYS[4], ARGV[4])
  end
  redis.call("ZADD", KEYS[1], seq, ARGV[i])
  redis.call("ZADD", KEYS[2], ARGV[2], ARGV[i])
end
redis.call("SET", KEYS[4], ARGV[4], "NX")  -- a sequence from before epochs: one now

local function forget(ids)
  for first = 1, #ids, 1000 do
    local chunk = {unpack(ids, first, math.min(first + 999, #ids))}
    redis.call("ZREM", KEYS[1], unpack(chunk))
    redis.call("ZREM", KEYS[2], unpack(chunk))
  end
end

forget(redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", "(" .. ARGV[1]))
local over = redis.call("ZCARD", KEYS[1]) - tonumber(ARGV[3])
if over > 0 then
  forget(redis.call("ZRANGE", KEYS[1], 0, over - 1))
end
local latest = redis.call("ZRANGE", KEYS[2], -1, -1, "WITHSCORES")
if latest[2] then
  local at = string.format("%.0f", tonumber(latest[2]))
  for i = 1, 2 do
    redis.call("PEXPIREAT", KEYS[i], at)
  end
end
return seq
