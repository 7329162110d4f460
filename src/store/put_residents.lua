-- One import call: residents inserted or replaced, and the change entry
-- other processes follow (the tickets, one per line: followers read the
-- residents from the hash), in one script call on one slot.
-- KEYS[1] the residents hash (ticket number -> JSON), KEYS[2] its change
-- stream. ARGV[1] how long the stream keeps an entry (ms, by Redis's clock;
-- trimmed about then), then ticket, JSON pairs.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lines = {}
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  lines[#lines + 1] = ARGV[i]
end
redis.call('XADD', KEYS[2], 'MINID', '~', tostring(now_ms - tonumber(ARGV[1])) .. '-0',
  '*', 'tickets', table.concat(lines, '\n'))
return #lines
