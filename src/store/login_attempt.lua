-- One login (or operator identity check) of a ticket, for the lockout that
-- every process shares. A locked ticket answers its lock, whatever the
-- birth date; else a match clears the ticket's failures, and a mismatch is
-- counted: the one that reaches the limit within the window locks it.
-- failures: the ticket's recent failures (sorted set: score unix ms by
-- Redis's clock, member that with a random suffix), lock: its lock (a
-- string that expires with it). matched: "1" when the birth date matched,
-- failures_that_lock, window_ms, lock_ms, suffix: a random one. Answers the ms the lock still runs when
-- the ticket was locked before this attempt, else 0.
local left = redis.call('PTTL', lock)
if left > 0 then
  return left
end
if matched == '1' then
  redis.call('DEL', failures)
  return 0
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', failures, '-inf', now_ms - tonumber(window_ms))
redis.call('ZADD', failures, now_ms, now_ms .. '.' .. suffix)
redis.call('PEXPIRE', failures, window_ms)
if redis.call('ZCARD', failures) >= tonumber(failures_that_lock) then
  redis.call('SET', lock, '1', 'PX', lock_ms)
  redis.call('DEL', failures)
end
return 0
