-- store.lua: a task's record, fenced by the attempt of the run that writes it
-- (ResultBackend.store): a write whose attempt is lower than the record's is refused, so a
-- worker cut off past its lease cannot overwrite the record of the worker that took its task
-- over. Sent with EVAL, never EVALSHA, and always inside a MULTI/EXEC: with the message's
-- ack there, a NOSCRIPT would let the ack through without its result; and a server over
-- maxmemory refuses every command queued in a MULTI, so the whole transaction is refused,
-- never the result alone. (No shebang: Redis 6.2 would not compile it.)
--
-- KEYS[1] {prefix:T}:result   KEYS[2] {prefix:T}:ready   KEYS[3] {prefix:T}:attempt
-- ARGV[1] "<state>\n<record>"   ARGV[2] ttl (ms)   ARGV[3] "1": a ready state
-- ARGV[4] the attempt: 0, no run's (always written, the record's attempt left as it was);
--         1, a task's first run (no attempt key written: most records cost no key more)
--
-- Returns 1 when written, 0 when refused.
local attempt = tonumber(ARGV[4])
local fence = tonumber(redis.call("GET", KEYS[3]) or "0")
if attempt > 0 and attempt < fence then return 0 end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
if attempt > 1 then
  redis.call("SET", KEYS[3], ARGV[4], "PX", ARGV[2])
end
if ARGV[3] == "1" then
  redis.call("DEL", KEYS[2])
  redis.call("RPUSH", KEYS[2], 1)
  redis.call("PEXPIRE", KEYS[2], ARGV[2])
end
return 1
