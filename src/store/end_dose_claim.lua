-- Ends a shared dose claim (see claim_dose.lua), or forgets a booked dose.
-- KEYS[1] the resident's doses. ARGV[1] dose, ARGV[2] what the field must
-- start with for this to change it ("pending <claim> " or "booked <id> "),
-- ARGV[3] the new value ("booked <reservation id> <day>"), or "" to remove it.
local field = 'dose:' .. ARGV[1]
local current = redis.call('HGET', KEYS[1], field)
if not current or string.sub(current, 1, #ARGV[2]) ~= ARGV[2] then
  return 0
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], field)
else
  redis.call('HSET', KEYS[1], field, ARGV[3])
end
return 1
