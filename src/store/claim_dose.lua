-- A resident's claim on one dose, shared by every process: one booking of a
-- dose at a time, and none while the dose is booked.
-- doses: the resident's doses (hash: "dose:<n>" -> "pending <claim> <until
-- ms> <day>" or "booked <reservation id> <day>", and "cascade" -> "<until
-- ms>" while a cancellation cascade runs; leases by Redis's clock).
-- kept_refusal: the first refusal kept under the booking's Idempotency-Key
-- (remember_refusal), read when keyed is "1".
-- dose, claim_id, lease_ms, day: the venue-day it books
-- ("<venue>/<date>"), replacing: the value this claim may replace (a stale
-- one its caller checked against the store), or "", keyed: "1" for a keyed
-- booking, else "", prior_dose: the prior dose the caller knows as a
-- reservation (answered "prior_gone" when the record does not hold it), or "".
-- Returns "OK <until ms>" (claimed, until its lease ends), or the value standing in the way, with "expired "
-- in front of a pending claim whose lease has ended.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
-- A keyed booking refused before, through any process: that answer.
if keyed ~= '' then
  local refused = redis.call('GET', kept_refusal)
  if refused then
    return 'refused ' .. refused
  end
end
-- A cancellation cascade running (start_cascade.lua): no booking meanwhile.
local cascade = redis.call('HGET', doses, 'cascade')
if cascade and tonumber(cascade) >= now then
  return 'pending cascade ' .. cascade .. ' -'
end
-- The prior dose the caller knows as a reservation must still be held.
if prior_dose ~= '' and not redis.call('HGET', doses, 'dose:' .. prior_dose) then
  return 'prior_gone'
end
local field = 'dose:' .. dose
local current = redis.call('HGET', doses, field)
if current and current ~= replacing then
  local kind, _, until_ms = string.match(current, '^(%S+) (%S+) (%S+)')
  if kind == 'pending' and tonumber(until_ms) < now then
    return 'expired ' .. current
  end
  return current
end
local until_ms = now + tonumber(lease_ms)
redis.call('HSET', doses, field, 'pending ' .. claim_id .. ' ' .. until_ms .. ' ' .. day)
return 'OK ' .. until_ms
