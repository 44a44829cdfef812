-- release.lua: make everything CONSUMER holds in one queue (and has held for at least the
-- given idle time) available again, at the back of its band; forget a consumer left empty.
-- Entries listed as running count as started once more; the others (prefetched, never
-- started) keep their count. Runs after entries.lua: junk fields are read as settle.lua
-- reads them (an entry left without a body is dead-lettered by the next fetch).
--
-- KEYS[1..4]   {prefix:queue}:b3 .. b0   the queue's band streams
-- ARGV[1] group   ARGV[2] consumer   ARGV[3] min idle (ms) an entry must have to be taken
-- ARGV[4] "1": count every entry as started (a dead worker: which one ran is unknown)
-- ARGV[5..]    receipts "<band>-<id>" of running entries
--
-- Returns the number of entries released.
local running = {}
for i = 5, #ARGV do running[ARGV[i]] = true end
local count_all = ARGV[4] == "1"
local released = 0
for k = 1, 4 do
  local band = 4 - k
  local pending = redis.call("XPENDING", KEYS[k], ARGV[1], "IDLE", ARGV[3], "-", "+", 100000, ARGV[2])
  for _, p in ipairs(pending) do
    local id = p[1]
    local entry = redis.call("XRANGE", KEYS[k], id, id)
    if entry[1] then
      local fields = fields_of(entry[1][2])
      local body = fields["b"] or ""
      local deliveries = starts_of(fields["d"])
      local priority = priority_of(fields["p"], 3 * band)
      if count_all or running[band .. "-" .. id] then
        deliveries = math.min(MAX_STARTS, deliveries + 1)
      end
      -- The XACK first: Redis over maxmemory refuses a script's first write that may grow
      -- memory, but none after another write (it never stops a script half-way), so the
      -- release, a move, goes through on a full server too.
      redis.call("XACK", KEYS[k], ARGV[1], id)
      redis.call("XADD", KEYS[k], "*", "b", body, "d", deliveries, "p", priority)
      released = released + 1
    else
      redis.call("XACK", KEYS[k], ARGV[1], id)
    end
    redis.call("XDEL", KEYS[k], id)
  end
  -- A consumer that holds nothing more is gone for good (its process has exited).
  if #redis.call("XPENDING", KEYS[k], ARGV[1], "-", "+", 1, ARGV[2]) == 0 then
    redis.call("XGROUP", "DELCONSUMER", KEYS[k], ARGV[1], ARGV[2])
  end
end
return released
