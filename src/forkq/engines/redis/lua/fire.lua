-- fire.lua: a periodic schedule's fire, recorded and enqueued only if its due time is newer
-- than the schedule's record, in one step: whichever scheduler sends a fire, and however often
-- (a leader that lost its lease mid-tick, a new one catching up), it is enqueued at most once.
-- entries.lua is put before this text (its `integer` reads what anyone may have written).
--
-- KEYS[1]  {prefix:Q}:schedules  hash: schedule name -> "<due ms> <fired at ms> <task id>",
--                                where Q is the queue the schedule's fires go to
-- KEYS[2]  {prefix:Q}:b<band>    the band stream of the fire's priority; written only when
--                                ARGV[5] is not empty (empty: a record only, no message)
-- ARGV     schedule name, due ms, now ms, task id, body, priority (0-9)
-- Returns  { 1 when recorded (and enqueued), else 0; the record it found, or nil }
--
-- A record that cannot be read (not "<integer> ...") counts as none, and is replaced.

local name, due = ARGV[1], integer(ARGV[2])
local before = redis.call("HGET", KEYS[1], name)
if before then
  local last = integer(string.match(before, "^(%-?%d+) "))
  if last ~= nil and last >= due then
    return { 0, before }
  end
end
redis.call("HSET", KEYS[1], name, ARGV[2] .. " " .. ARGV[3] .. " " .. ARGV[4])
if ARGV[5] ~= "" then
  redis.call("XADD", KEYS[2], "*", "b", ARGV[5], "d", 0, "p", ARGV[6])
end
return { 1, before }
