-- fetch.lua: ack the entries given (acks the consumer has kept back ride with its next fetch:
-- one round trip for all), move due delayed messages of one queue into its streams, then read
-- up to LIMIT new entries for CONSUMER, highest priority band first. With LIMIT 0 and
-- nothing to move it only acks. Runs after entries.lua (how junk is read).
--
-- KEYS[1]      {prefix:queue}:delayed   sorted set; score = due time (ms), member =
--                                       "<nonce>|<priority>|<deliveries>|<body>"
-- KEYS[2..5]   {prefix:queue}:b3 .. b0  streams, one per priority band (b3 first); entry
--                                       fields: b = body, d = times started before, p = priority
-- KEYS[6]      {prefix:queue}:dead      stream of dead letters: b = body, r = reason,
--                                       t = time (ms), p = priority
-- ARGV[1] group   ARGV[2] consumer   ARGV[3] limit   ARGV[4] the caller's clock (ms), unused:
--         due times are the server's (TIME), so a worker's wrong clock moves nothing early
--         or late   ARGV[5] max to move
-- ARGV[6] "1": before new entries, read again those the consumer holds already (its pending
--         entries, the kept acks being acked first): a call whose reply was lost delivered
--         them to it without its knowing
-- ARGV[7], ARGV[8] the dead-letter caps: most letters kept, oldest kept in ms (0: no cap)
-- ARGV[9], ARGV[10], ...  pairs: band (0-3) and id of each entry to ack first; an entry the
--                         consumer no longer holds (released from it meanwhile) is gone already
--
-- Malformed input never stops the script: a delayed member that cannot be read, and a stream
-- entry without a body, go to KEYS[6] with the reason (removed from where they were) and the
-- rest flows on.
--
-- Returns { ms until the next delayed message is due (0: due now) or false, 1 if it may hold more than it read again else 0,
--           band, id, body, deliveries, band, id, body, ... }

-- Acks: one XACK and one XDEL per band, for all its ids. No check that the consumer holds
-- them: an id never passes to another consumer (release and settle re-add the message under a
-- new id and delete the old one), so an id released meanwhile is gone and both calls skip it.
local caps = { ARGV[7], ARGV[8] }
-- The server's time in ms, read once and only when needed (a queue with delayed messages, a
-- dead letter's time): most fetches read no clock.
local now_ms = nil
local function now()
  if not now_ms then
    local clock = redis.call("TIME")
    now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  end
  return now_ms
end
local to_ack = {}
for a = 9, #ARGV - 1, 2 do
  local k = 5 - tonumber(ARGV[a])
  to_ack[k] = to_ack[k] or {}
  table.insert(to_ack[k], ARGV[a + 1])
end
for k, ids in pairs(to_ack) do
  redis.call("XACK", KEYS[k], ARGV[1], unpack(ids))
  redis.call("XDEL", KEYS[k], unpack(ids))
end

-- f(...), true; or false when the server refused its write for want of memory (over
-- maxmemory, Redis refuses a script's first write that may grow memory: nothing is written).
-- Any other error is raised again.
local function with_room(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return true end
  local text = type(err) == "table" and err.err or tostring(err)
  if string.sub(text, 1, 3) == "OOM" then return false end
  error(err)
end

-- Due delayed messages: looked for only when the earliest is due. A move the server refuses
-- for want of memory stops the moves: those left stay in the delayed set, due, for a later
-- fetch, and the streams are read all the same (a worker keeps running what is queued).
local first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
if first[2] and tonumber(first[2]) <= now() then
  local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now(), "LIMIT", 0, ARGV[5])
  for _, member in ipairs(due) do
    local m, moved = parse_member(member), nil
    if m.reason then
      moved = with_room(add_dead, KEYS[6], m.kept, m.reason, now(), 0, caps)
    else
      local band = math.min(3, math.floor(m.priority / 3))
      moved = with_room(redis.call, "XADD", KEYS[5 - band], "*", "b", m.body, "d", m.starts,
                        "p", m.priority)
    end
    if not moved then break end
    redis.call("ZREM", KEYS[1], member)
  end
  first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
end

local out = { false, 0 }
local remaining = tonumber(ARGV[3])

-- An entry read for the consumer: delivered, or dead-lettered (acked and deleted) when it has
-- no body to run; a junk start count is 0.
local function take(i, entry)
  local fields = fields_of(entry[2])
  local body = fields["b"]
  if body == nil or body == "" then
    local reason = body and "malformed stream entry: empty body (field b)"
      or no_body_reason(entry[2])
    add_dead(KEYS[6], "", reason, now(), priority_of(fields["p"], 0), caps)
    redis.call("XACK", KEYS[i], ARGV[1], entry[1])
    redis.call("XDEL", KEYS[i], entry[1])
    return
  end
  table.insert(out, 5 - i)
  table.insert(out, entry[1])
  table.insert(out, body)
  table.insert(out, starts_of(fields["d"]))
  remaining = remaining - 1
end

if ARGV[6] == "1" then
  for i = 2, 5 do
    if remaining <= 0 then break end
    local read = redis.call("XREADGROUP", "GROUP", ARGV[1], ARGV[2], "COUNT", remaining,
                            "STREAMS", KEYS[i], "0")
    for _, entry in ipairs(read and read[1][2] or {}) do
      if entry[2] then take(i, entry)
      else redis.call("XACK", KEYS[i], ARGV[1], entry[1]) end  -- deleted meanwhile: nothing to run
    end
  end
  if remaining <= 0 then out[2] = 1 end  -- it filled the batch: more may be held
end

for i = 2, 5 do
  if remaining <= 0 then break end
  local read = redis.call("XREADGROUP", "GROUP", ARGV[1], ARGV[2], "COUNT", remaining,
                          "STREAMS", KEYS[i], ">")
  if read then
    for _, entry in ipairs(read[1][2]) do take(i, entry) end
  end
end

-- Relative: the caller's clock may be off the server's.
if first[2] then out[1] = math.max(0, (tonumber(first[2]) or now()) - now()) end
return out
