-- revocations.lua: the revocations numbered after a reader's cursor that have not expired
-- (`ResultBackend.revocations`; the rules: forkq/engines/contract/revocations.py).
--
-- KEYS  as revoke.lua's: {prefix:revoked}:order, :until, :seq, :epoch
-- ARGV[1]  since (the reader's cursor)   ARGV[2]  now (ms)
--
-- Returns {latest number, epoch ("" if none), id, expiry (ms), id, expiry, ...}, oldest
-- first: the ids numbered after `since` and up to the latest, read in the same call (a script
-- runs alone), so the next read from that cursor misses none. Read defensively, since a
-- worker takes no task until it has read them once: a key of another type reads as absent,
-- a sequence that is not a whole number as 0.
local function of_type(key, kind)
  return redis.call("TYPE", key)["ok"] == kind
end

local seq = of_type(KEYS[3], "string") and redis.call("GET", KEYS[3])
local latest = 0
if seq and string.match(seq, "^%d+$") and #seq <= 15 then
  latest = tonumber(seq)
end
local epoch = of_type(KEYS[4], "string") and redis.call("GET", KEYS[4])
local out = {latest, epoch or ""}
if not (of_type(KEYS[1], "zset") and of_type(KEYS[2], "zset")) then
  return out
end
local now = tonumber(ARGV[2])
for _, id in ipairs(redis.call("ZRANGEBYSCORE", KEYS[1], "(" .. ARGV[1], latest)) do
  local expiry = redis.call("ZSCORE", KEYS[2], id)
  if expiry and tonumber(expiry) >= now then
    out[#out + 1] = id
    out[#out + 1] = expiry
  end
end
return out
