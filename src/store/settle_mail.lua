-- Record what became of a claimed mail.
-- KEYS[1] the partition's mail outbox (hash), KEYS[2] pending by next try,
-- KEYS[3] pending by due time (sorted sets, unix ms), KEYS[4] its claims
-- (hash: id -> token; claim_mail.lua).
-- ARGV[1] mail id, ARGV[2] its JSON, ARGV[3] next try (unix ms) if it is
-- still pending, or "" when it is settled (delivered, failed), ARGV[4] the
-- token of the claim that tried it, ARGV[5] '1' when it was delivered.
-- A mail claimed since by another worker (this claim's lease ran out) is
-- left to that one ('LOST'), unless this try delivered it: a delivery is
-- recorded over the other claim while the mail is pending, so the other
-- worker's hold_mail.lua refuses to send it again (the sender's store was
-- away past the lease; seen by the nemesis). A mail no longer pending
-- (withdrawn) stays as it is. A try again of a settlement that was written
-- but not known to be replicated finds it written: 'SETTLED' (it writes
-- nothing, and the caller's WAIT on the same connection covers the first
-- write).
local claim = redis.call('HGET', KEYS[4], ARGV[1])
local pending = redis.call('ZSCORE', KEYS[3], ARGV[1])
if claim ~= ARGV[4] then
  if not claim and redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    return 'SETTLED'
  end
  if not (ARGV[5] == '1' and pending) then
    return 'LOST'
  end
end
redis.call('HDEL', KEYS[4], ARGV[1])
if not pending then
  return 'SETTLED'
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
return 'OK'
