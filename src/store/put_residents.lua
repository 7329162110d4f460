-- One import call: residents inserted or replaced, and the change entry
-- other processes follow (the tickets, one per line: followers read the
-- residents from the hash), in one script call on one slot.
-- residents: the residents hash (ticket number -> JSON), changes: its
-- change stream. changes_kept_ms: how long the stream keeps an entry (by
-- Redis's clock; trimmed about then). After TAIL: ticket, JSON pairs.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lines = {}
for i = TAIL + 1, #ARGV, 2 do
  redis.call('HSET', residents, ARGV[i], ARGV[i + 1])
  lines[#lines + 1] = ARGV[i]
end
redis.call('XADD', changes, 'MINID', '~', tostring(now_ms - tonumber(changes_kept_ms)) .. '-0',
  '*', 'tickets', table.concat(lines, '\n'))
return #lines
