-- store.lua: a task's record, fenced by the run that writes it (ResultBackend.store): refused
-- where the record was written by a run of the same sending with a higher attempt, so a
-- worker cut off past its lease cannot overwrite the record of the worker that took its task
-- over. Sent with EVAL, never EVALSHA, and always inside a MULTI/EXEC: with the message's
-- ack there, a NOSCRIPT would let the ack through without its result; and a server over
-- maxmemory refuses every command queued in a MULTI, so the whole transaction is refused,
-- never the result alone. (No shebang: Redis 6.2 would not compile it.)
--
-- KEYS[1] {prefix:T}:result   KEYS[2] {prefix:T}:ready   KEYS[3] {prefix:T}:fence
-- ARGV[1] "<state>\n<record>"   ARGV[2] ttl (ms)   ARGV[3] "1": a ready state
-- ARGV[4] the run's attempt, 0 for a write of no run's (always written; the fence forgotten)
-- ARGV[5] the run's sending
-- KEYS[3] holds "<attempt> <sending>" of the record's last run past a first: a first run's
-- write (attempt 1) keeps the one it found, so most records cost no key more.
--
-- Returns 1 when written, 0 when refused.
local attempt = tonumber(ARGV[4])
local fence = redis.call("GET", KEYS[3])
if attempt > 0 and fence then
  local fenced, sending = string.match(fence, "^(%d+) (.*)$")
  if sending == ARGV[5] and attempt < tonumber(fenced) then return 0 end
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
if attempt == 0 then
  redis.call("DEL", KEYS[3])
elseif attempt > 1 then
  redis.call("SET", KEYS[3], ARGV[4] .. " " .. ARGV[5], "PX", ARGV[2])
end
if ARGV[3] == "1" then
  redis.call("DEL", KEYS[2])
  redis.call("RPUSH", KEYS[2], 1)
  redis.call("PEXPIRE", KEYS[2], ARGV[2])
end
return 1
