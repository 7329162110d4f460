-- Starts a cancellation cascade on a resident's shared dose record: refused
-- while a booking of any dose is in flight (or another cascade runs), else
-- marked for the lease, so that no booking starts until it ends (HDEL
-- "cascade", or the lease). doses: the resident's doses (claim_dose.lua),
-- lease_ms. Answers {"BUSY"}, or {"OK", "<dose> <value>", …} with
-- every dose the record holds (booked, or a claim whose lease ended, whose
-- booking may have committed): the caller checks those the cascade would
-- miss against their days.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local fields = redis.call('HGETALL', doses)
local held = {'OK'}
for i = 1, #fields, 2 do
  local field, value = fields[i], fields[i + 1]
  if field == 'cascade' then
    if tonumber(value) >= now then
      return {'BUSY'}
    end
  else
    local kind, _, until_ms = string.match(value, '^(%S+) (%S+) (%S+)')
    if kind == 'pending' and tonumber(until_ms) >= now then
      return {'BUSY'}
    end
    held[#held + 1] = string.sub(field, 6) .. ' ' .. value
  end
end
redis.call('HSET', doses, 'cascade', now + tonumber(lease_ms))
return held
