-- settle.lua: give back one entry held by CONSUMER: requeue it, or dead-letter it (an ack is
-- plain XACK and XDEL, link.py). An entry this consumer does not hold (acked already,
-- released from it, or another consumer's) is left alone. Runs after entries.lua: the entry's fields may be junk (a junk
-- start count is 0, a junk priority the lowest of its band); an entry deleted while held has
-- nothing left to requeue or keep.
--
-- KEYS[1] the entry's band stream   KEYS[2] {prefix:queue}:delayed   KEYS[3] {prefix:queue}:dead
-- ARGV[1] group   ARGV[2] consumer   ARGV[3] entry id   ARGV[4] action: requeue | dead
-- ARGV[5] requeue: delay (ms), dead: reason   ARGV[6] the caller's clock (ms), unused: a delay
-- counts from the server's (TIME), as fetch.lua reads due times   ARGV[7] the entry's band (0-3)
-- ARGV[8] nonce (of a delayed member, so that two equal messages stay two members)
-- ARGV[9], ARGV[10] the dead-letter caps: most letters kept, oldest kept in ms (0: no cap)
--
-- Returns 1 when settled, 0 when the consumer did not hold the entry.
local pending = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #pending == 0 then return 0 end
local clock = redis.call("TIME")
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call("XACK", KEYS[1], ARGV[1], ARGV[3])
local action = ARGV[4]
local entry = redis.call("XRANGE", KEYS[1], ARGV[3], ARGV[3])[1]
if entry then
  local fields = fields_of(entry[2])
  local body = fields["b"] or ""
  local deliveries = starts_of(fields["d"])
  local priority = priority_of(fields["p"], 3 * tonumber(ARGV[7]))
  if action == "requeue" then
    local delay = tonumber(ARGV[5])
    if delay > 0 then
      local member = ARGV[8] .. "|" .. priority .. "|" .. deliveries .. "|" .. body
      redis.call("ZADD", KEYS[2], now + delay, member)
    else
      redis.call("XADD", KEYS[1], "*", "b", body, "d", deliveries, "p", priority)
    end
  else
    add_dead(KEYS[3], body, ARGV[5], now, priority, { ARGV[9], ARGV[10] })
  end
end
redis.call("XDEL", KEYS[1], ARGV[3])
return 1
