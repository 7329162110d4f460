-- Ends a shared dose claim (see claim_dose.lua), or forgets a booked dose.
-- doses: the resident's doses. dose, expected: what the field must start
-- with for this to change it ("pending <claim> " or "booked <id> "),
-- new_value: "booked <reservation id> <day>", or "" to remove it.
local field = 'dose:' .. dose
local current = redis.call('HGET', doses, field)
if not current or string.sub(current, 1, #expected) ~= expected then
  return 0
end
if new_value == '' then
  redis.call('HDEL', doses, field)
else
  redis.call('HSET', doses, field, new_value)
end
return 1
