-- clock.lua: put before rate.lua and slots.lua (`forkq.engines.redis.limits`).
-- `now`: the server's time in microseconds (the one clock every worker's limits share);
-- `whole(value)`: a stored value that is a whole number of decimal digits, else nil (junk
-- anyone with access could write reads as absent); `text(n)`: a number as whole digits.
local function whole(value)
  if type(value) == "string" and #value <= 17 and string.match(value, "^%d+$") then
    return tonumber(value)
  end
  return nil
end
local function text(n)
  return string.format("%.0f", n)
end

local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
