-- Keep a keyed booking's final refusal for every process, unless one is kept
-- under the key already (that one is the answer), and unless the resident's
-- shared dose record says the key's own booking may exist: a refusal that
-- rests on a process's view a moment behind the store must never become
-- the key's answer while a try of it is in flight or stands (seen by the
-- nemesis: a retry refused "not eligible" by a process that had not yet
-- followed dose 1, while the first try's uncertain batch was kept).
-- kept_refusal: the refusal kept under the key, doses: the resident's doses
-- (see claim_dose.lua; the same slot).
-- refusal: the record, kept_for_s: how long it is kept, dose_asked: ("" when
-- the booking names none: every dose), answer_recorded: "1" to answer what
-- the record names ("" when the caller checked it: a claim whose lease runs
-- is still answered, since one may have started since).
-- Returns {'kept', <record>} (an earlier refusal), {'in_flight'} (a claim on
-- the dose whose lease runs), {'recorded', <dose>, <value>, ...} (what the
-- record names, for the caller to check against its days; nothing kept), or
-- {'new'} (kept now).
local kept = redis.call('GET', kept_refusal)
if kept then
  return {'kept', kept}
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local fields
if dose_asked ~= '' then
  fields = {'dose:' .. dose_asked, redis.call('HGET', doses, 'dose:' .. dose_asked)}
else
  fields = redis.call('HGETALL', doses)
end
local recorded = {'recorded'}
for i = 1, #fields, 2 do
  local dose = string.match(fields[i], '^dose:(%d+)$')
  local value = fields[i + 1]
  if dose and value then
    local kind, _, until_ms = string.match(value, '^(%S+) (%S+) (%S+)')
    if kind == 'pending' and tonumber(until_ms) >= now then
      return {'in_flight'}
    end
    recorded[#recorded + 1] = dose
    recorded[#recorded + 1] = value
  end
end
if answer_recorded == '1' and #recorded > 1 then
  return recorded
end
redis.call('SET', kept_refusal, refusal, 'EX', kept_for_s)
return {'new'}
