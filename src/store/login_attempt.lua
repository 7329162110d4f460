-- One login (or operator identity check) of a ticket, for the lockout that
-- every process shares. A locked ticket answers its lock, whatever the
-- birth date; else a match clears the ticket's failures, and a mismatch is
-- counted: the one that reaches the limit within the window locks it.
-- KEYS[1] the ticket's recent failures (sorted set: score unix ms by
-- Redis's clock, member that with a random suffix), KEYS[2] its lock (a
-- string that expires with it). ARGV[1] "1" when the birth date matched,
-- ARGV[2] failures that lock, ARGV[3] the window (ms), ARGV[4] the lock
-- (ms), ARGV[5] a random suffix. Answers the ms the lock still runs when
-- the ticket was locked before this attempt, else 0.
local left = redis.call('PTTL', KEYS[2])
if left > 0 then
  return left
end
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[1])
  return 0
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], now_ms, now_ms .. '.' .. ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[4])
  redis.call('DEL', KEYS[1])
end
return 0
