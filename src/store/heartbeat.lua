-- A process's lease in the member list, and the list of live members.
-- members: the member list (sorted set: score the lease's end, unix ms by
-- Redis's clock, so that the processes' clocks need not agree; member
-- "<id> <url>"). member: this one, lease_ms: its lease.
-- Returns the live members, this one included.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', members, '-inf', now)
redis.call('ZADD', members, now + tonumber(lease_ms), member)
return redis.call('ZRANGE', members, 0, -1)
