-- vote.lua: count a chord header member's vote (forkq's `ChordVote`) and say whether it fires;
-- asked to publish, publish the chord's messages when it fires and mark the chord done, in the
-- same call. Sent in one pipeline with the member's result writes (RedisBackend.vote), or in
-- one MULTI/EXEC with the writes, the effects' messages and the ack (the Redis session's
-- `_finish_atomically`), so that a fired chord's messages are published exactly once.
--
-- A success adds the member to the set (each task id once, however often it votes); the vote
-- that brings the set to SIZE, and a failure when none fired before, fires: the chord's
-- `firing` becomes its member. A vote fires while the chord is not done and its `firing` is
-- this member, so a vote that fired and is cast again (redelivered before its messages were
-- marked done) fires again, and any other does not. Publishing marks it done at once.
--
-- KEYS[1]   {prefix:chord:C}:members   set of the members whose success is counted
-- KEYS[2]   {prefix:chord:C}:state     hash: firing = the member whose vote fired,
--                                      done = "1" once its messages are published
--           (both with the result backend's prefix; both expire TTL after the latest vote)
-- KEYS[3..] when publishing: the key each message goes to, with the broker's prefix: its
--           band stream {prefix:Q}:b0..b3 (due now) or its delayed set {prefix:Q}:delayed.
--           Those are in other hash slots: on Redis Cluster, only the count (no publishing)
--           is a single-slot script.
-- ARGV[1] member (its task id)   ARGV[2] size   ARGV[3] "1" if the member failed
-- ARGV[4] TTL (ms)   ARGV[5] the caller's clock (ms), unused: a delay counts from the server's
--         (TIME), the clock fetch.lua reads due times by   ARGV[6] "1": publish the messages and mark done when
--         the vote fires (with no messages, only mark done); "0": only count and answer
-- ARGV[7..] four per message, in the order of KEYS[3..]: priority (0-9), delay (ms, 0: due
--         now), nonce, body. A message due now is an entry of its band stream with fields
--         b = body, d = 0, p = priority; a delayed one the member
--         "<nonce>|<priority>|0|<body>" of the delayed set, scored now + delay (keys.py).
--
-- Returns 1 when the vote fires, else 0.
local member, size, failed = ARGV[1], tonumber(ARGV[2]), ARGV[3] == "1"
local ttl = tonumber(ARGV[4])
local due = failed
if not failed then
  redis.call("SADD", KEYS[1], member)
  due = redis.call("SCARD", KEYS[1]) >= size
end
redis.call("PEXPIRE", KEYS[1], ttl)
local state = redis.call("HMGET", KEYS[2], "firing", "done")
local firing, done = state[1], state[2]
if done then
  redis.call("PEXPIRE", KEYS[2], ttl)
  return 0
end
if due and not firing then
  firing = member
  redis.call("HSET", KEYS[2], "firing", member)
end
local fires = firing == member
if fires and ARGV[6] == "1" then
  local clock = redis.call("TIME")
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  for m = 0, #KEYS - 3 do
    local priority, delay = ARGV[7 + 4 * m], tonumber(ARGV[8 + 4 * m])
    local nonce, body = ARGV[9 + 4 * m], ARGV[10 + 4 * m]
    if delay > 0 then
      redis.call("ZADD", KEYS[3 + m], now + delay, nonce .. "|" .. priority .. "|0|" .. body)
    else
      redis.call("XADD", KEYS[3 + m], "*", "b", body, "d", 0, "p", priority)
    end
  end
  redis.call("HSET", KEYS[2], "done", "1")
end
redis.call("PEXPIRE", KEYS[2], ttl)
if fires then return 1 end
return 0
