-- delay.lua: add one delayed message to its queue's delayed set, due a delay from now by the
-- server's clock (TIME), the one fetch.lua reads due times by: a publisher whose clock is off
-- delays it neither more nor less. Sent with EVAL inside a publish's MULTI/EXEC.
--
-- KEYS[1] {prefix:queue}:delayed   ARGV[1] delay (ms)   ARGV[2] member (keys.py)
local clock = redis.call("TIME")
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
return redis.call("ZADD", KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
