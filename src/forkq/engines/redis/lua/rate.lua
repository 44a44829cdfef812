-- rate.lua: take a start slot of a rate-limited bucket for a holder (`ResultBackend.take_rate`).
-- The rule is forkq/engines/contract/limits.py's `decide_rate`, mirrored step for step:
--
--   the holder has a reservation r?
--     r > now + tolerance                       wait r - now, r kept
--     now + tolerance >= last + interval        go: last = now, r deleted
--   otherwise (none, or one due too soon after another start):
--     slot = max(tat, now, last + interval), tat = slot + interval
--     slot <= now + tolerance                   go: last = now
--     else                                      r = slot (kept `keep` ms past it); wait
--
-- Times are the server's (TIME), in microseconds: every worker reads the one clock.
--
-- KEYS[1]  {prefix:rate:T}:override      the interval in force for task T (us), while set
-- KEYS[2]  {prefix:rate:T}:bucket:K      hash: tat = next free slot, last = latest start (us);
--                                        expires once the bucket is as good as new
-- KEYS[3]  {prefix:rate:T}:held:H:K      holder H's reserved slot (us), expiring `keep` past it
--          (all three share the hash tag {prefix:rate:T}: one slot on Redis Cluster)
-- ARGV[1]  interval (us, >= 1), unless KEYS[1] says otherwise
-- ARGV[2]  keep (ms)   ARGV[3]  tolerance (us)
--
-- Returns the wait in microseconds: 0 to start now. A stored value that is not a whole number
-- of decimal digits (junk anyone with access could write) reads as absent.
local interval = whole(redis.call("GET", KEYS[1]))
if not interval or interval < 1 then
  interval = tonumber(ARGV[1])
end
local keep, tolerance = tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call("HMGET", KEYS[2], "tat", "last")
local tat, last = whole(state[1]) or 0, whole(state[2])
local reservation = whole(redis.call("GET", KEYS[3]))
local wait = 0

if reservation and reservation > now + tolerance then
  return reservation - now
end
if reservation and (not last or now + tolerance >= last + interval) then
  redis.call("DEL", KEYS[3])
  last = now
else
  local slot = math.max(tat, now)
  if last then
    slot = math.max(slot, last + interval)
  end
  tat = slot + interval
  if slot <= now + tolerance then
    last = now
  else
    wait = slot - now
    redis.call("SET", KEYS[3], text(slot), "PX", text(math.floor(wait / 1000) + keep))
  end
end

redis.call("HSET", KEYS[2], "tat", text(tat), "last", text(last or 0))
local idle = math.max(tat, (last or 0) + interval)
redis.call("PEXPIRE", KEYS[2], text(math.floor((idle - now) / 1000) + 1000))
return wait
