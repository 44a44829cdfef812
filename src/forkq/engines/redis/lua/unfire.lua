-- unfire.lua: put a schedule's record back as it was before a fire whose publish failed (the
-- record kept in the result backend, the message sent to RabbitMQ): only if the record is
-- still the one that fire wrote, so a newer fire is never undone.
--
-- KEYS[1]  {prefix:Q}:schedules  (see fire.lua)
-- ARGV     schedule name, the record the fire wrote, the record before it ("": none)
-- Returns  1 when put back, else 0

if redis.call("HGET", KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
if ARGV[3] == "" then
  redis.call("HDEL", KEYS[1], ARGV[1])
else
  redis.call("HSET", KEYS[1], ARGV[1], ARGV[3])
end
return 1
