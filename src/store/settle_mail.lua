-- Record what became of a claimed mail.
-- outbox: the partition's mail outbox (hash), pending_by_next_try and
-- pending_by_due (sorted sets, unix ms), claims: its claims (hash: id ->
-- token; claim_mail.lua). id: the mail's, json: its record, next_try_ms:
-- its next try (unix ms) if it is still pending, or "" when it is settled
-- (delivered, failed), token: the claim that tried it, delivered: '1' when
-- it was delivered.
-- A mail claimed since by another worker (this claim's lease ran out) is
-- left to that one ('LOST'), unless this try delivered it: a delivery is
-- recorded over the other claim while the mail is pending, so the other
-- worker's hold_mail.lua refuses to send it again (the sender's store was
-- away past the lease; seen by the nemesis). A mail no longer pending
-- (withdrawn) stays as it is. A try again of a settlement that was written
-- but not known to be replicated finds it written: 'SETTLED' (it writes
-- nothing, and the caller's WAIT on the same connection covers the first
-- write).
local claim = redis.call('HGET', claims, id)
local pending = redis.call('ZSCORE', pending_by_due, id)
if claim ~= token then
  if not claim and redis.call('HGET', outbox, id) == json then
    return 'SETTLED'
  end
  if not (delivered == '1' and pending) then
    return 'LOST'
  end
end
redis.call('HDEL', claims, id)
if not pending then
  return 'SETTLED'
end
redis.call('HSET', outbox, id, json)
if next_try_ms == '' then
  redis.call('ZREM', pending_by_next_try, id)
  redis.call('ZREM', pending_by_due, id)
else
  redis.call('ZADD', pending_by_next_try, next_try_ms, id)
end
return 'OK'
