-- A process's lease in the member list, and the list of live members.
-- KEYS[1] the members (sorted set: score the lease's end, unix ms by Redis's
-- clock, so that the processes' clocks need not agree; member "<id> <url>").
-- ARGV[1] this member, ARGV[2] lease ms.
-- Returns the live members, this one included.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
