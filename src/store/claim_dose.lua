-- A resident's claim on one dose, shared by every process: one booking of a
-- dose at a time, and none while the dose is booked.
-- KEYS[1] the resident's doses (hash: "dose:<n>" -> "pending <claim> <until ms> <day>"
-- or "booked <reservation id> <day>"; the lease by Redis's clock).
-- ARGV[1] dose, ARGV[2] claim id, ARGV[3] lease ms, ARGV[4] the venue-day it
-- books ("<venue>/<date>"), ARGV[5] the value this claim may replace (a
-- stale one its caller checked against the store), or "".
-- Returns "OK" (claimed), or the value standing in the way, with "expired "
-- in front of a pending claim whose lease has ended.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local field = 'dose:' .. ARGV[1]
local current = redis.call('HGET', KEYS[1], field)
if current and current ~= ARGV[5] then
  local kind, _, until_ms = string.match(current, '^(%S+) (%S+) (%S+)')
  if kind == 'pending' and tonumber(until_ms) < now then
    return 'expired ' .. current
  end
  return current
end
redis.call('HSET', KEYS[1], field,
  'pending ' .. ARGV[2] .. ' ' .. (now + tonumber(ARGV[3])) .. ' ' .. ARGV[4])
return 'OK'
