-- Renew a worker's claim on one mail right before it is sent.
-- pending_by_next_try: the partition's pending mail by next try (sorted
-- set, unix ms), pending_by_due: by due time, claims: its claims (hash: id
-- -> token; claim_mail.lua). id: the mail's, token: the claim's,
-- lease_ends_ms: the lease's new end (unix ms).
-- Returns 1 when the mail is still pending and held by this claim (its
-- lease now ends at lease_ends_ms), else 0: another worker claimed it after
-- this claim's lease ran out, or it was settled or withdrawn. Then it must
-- not be sent.
if redis.call('HGET', claims, id) ~= token or not redis.call('ZSCORE', pending_by_due, id) then
  return 0
end
redis.call('ZADD', pending_by_next_try, lease_ends_ms, id)
return 1
