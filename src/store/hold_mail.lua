-- Renew a worker's claim on one mail right before it is sent.
-- KEYS[1] the partition's pending mail by next try (sorted set, unix ms),
-- KEYS[2] its pending mail by due time, KEYS[3] its claims (hash: id ->
-- token; claim_mail.lua).
-- ARGV[1] mail id, ARGV[2] the claim's token, ARGV[3] the lease's new end
-- (unix ms).
-- Returns 1 when the mail is still pending and held by this claim (its
-- lease now ends at ARGV[3]), else 0: another worker claimed it after this
-- claim's lease ran out, or it was settled or withdrawn. Then it must not
-- be sent.
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] or not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
