-- settle.lua: finish with one entry held by CONSUMER: ack it, requeue it, or dead-letter it.
-- An entry this consumer does not hold (acked already, released from it, or another
-- consumer's) is left alone.
--
-- KEYS[1] the entry's band stream   KEYS[2] {prefix:queue}:delayed   KEYS[3] {prefix:queue}:dead
-- ARGV[1] group   ARGV[2] consumer   ARGV[3] entry id   ARGV[4] action: ack | requeue | dead
-- ARGV[5] requeue: delay (ms), dead: reason   ARGV[6] now (ms)   ARGV[7] nonce
--
-- Returns 1 when settled, 0 when the consumer did not hold the entry.
local pending = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #pending == 0 then return 0 end
redis.call("XACK", KEYS[1], ARGV[1], ARGV[3])
local action = ARGV[4]
if action ~= "ack" then
  local entry = redis.call("XRANGE", KEYS[1], ARGV[3], ARGV[3])
  local body, deliveries, priority = "", "0", "0"
  if entry[1] then
    local fields = entry[1][2]
    for f = 1, #fields, 2 do
      if fields[f] == "b" then body = fields[f + 1]
      elseif fields[f] == "d" then deliveries = tonumber(fields[f + 1]) or 0
      elseif fields[f] == "p" then priority = tostring(math.min(9, math.max(0, tonumber(fields[f + 1]) or 0))) end
    end
  end
  if action == "requeue" then
    local delay = tonumber(ARGV[5])
    if delay > 0 then
      local member = ARGV[7] .. "|" .. priority .. "|" .. deliveries .. "|" .. body
      redis.call("ZADD", KEYS[2], tonumber(ARGV[6]) + delay, member)
    else
      redis.call("XADD", KEYS[1], "*", "b", body, "d", deliveries, "p", priority)
    end
  else
    redis.call("XADD", KEYS[3], "*", "b", body, "r", ARGV[5], "t", ARGV[6], "p", priority)
  end
end
redis.call("XDEL", KEYS[1], ARGV[3])
return 1
