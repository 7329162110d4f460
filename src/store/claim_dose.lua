-- A resident's claim on one dose, shared by every process: one booking of a
-- dose at a time, and none while the dose is booked.
-- KEYS[1] the resident's doses (hash: "dose:<n>" -> "pending <claim> <until ms> <day>"
-- or "booked <reservation id> <day>", and "cascade" -> "<until ms>" while a
-- cancellation cascade runs; leases by Redis's clock).
-- KEYS[2] the first refusal kept under the booking's Idempotency-Key
-- (remember_refusal), read when ARGV[6] is "1".
-- ARGV[1] dose, ARGV[2] claim id, ARGV[3] lease ms, ARGV[4] the venue-day it
-- books ("<venue>/<date>"), ARGV[5] the value this claim may replace (a
-- stale one its caller checked against the store), or "", ARGV[6] "1" for
-- a keyed booking, else "", ARGV[7] the prior dose the caller knows as a
-- reservation (answered "prior_gone" when the record does not hold it), or "".
-- Returns "OK <until ms>" (claimed, until its lease ends), or the value standing in the way, with "expired "
-- in front of a pending claim whose lease has ended.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
-- A keyed booking refused before, through any process: that answer.
if ARGV[6] ~= '' then
  local refused = redis.call('GET', KEYS[2])
  if refused then
    return 'refused ' .. refused
  end
end
-- A cancellation cascade running (start_cascade.lua): no booking meanwhile.
local cascade = redis.call('HGET', KEYS[1], 'cascade')
if cascade and tonumber(cascade) >= now then
  return 'pending cascade ' .. cascade .. ' -'
end
-- The prior dose the caller knows as a reservation must still be held.
if ARGV[7] ~= '' and not redis.call('HGET', KEYS[1], 'dose:' .. ARGV[7]) then
  return 'prior_gone'
end
local field = 'dose:' .. ARGV[1]
local current = redis.call('HGET', KEYS[1], field)
if current and current ~= ARGV[5] then
  local kind, _, until_ms = string.match(current, '^(%S+) (%S+) (%S+)')
  if kind == 'pending' and tonumber(until_ms) < now then
    return 'expired ' .. current
  end
  return current
end
local until_ms = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], field, 'pending ' .. ARGV[2] .. ' ' .. until_ms .. ' ' .. ARGV[4])
return 'OK ' .. until_ms
