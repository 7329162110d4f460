-- Make a batch whose commit outcome was unknown never applied.
-- KEYS[1] owner epoch, KEYS[2] last applied sequence, KEYS[3] reservations hash,
-- KEYS[4] the partition's audit log.
-- ARGV[1] epoch, ARGV[2] sequence, ARGV[3] c = count of created ids,
-- ARGV[4] p = count of previous records; then the c ids, then p id, JSON
-- pairs of the records as they were before the batch, then the members of
-- the batch's audit entries.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 'FENCED'
end
local applied = tonumber(redis.call('GET', KEYS[2]) or '0')
local sequence = tonumber(ARGV[2])
if applied >= sequence then
  -- It was applied: revert it.
  local created_end = 4 + tonumber(ARGV[3])
  local previous_end = created_end + 2 * tonumber(ARGV[4])
  for i = 5, created_end do
    redis.call('HDEL', KEYS[3], ARGV[i])
  end
  for i = created_end + 1, previous_end, 2 do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
  for i = previous_end + 1, #ARGV do
    redis.call('ZREM', KEYS[4], ARGV[i])
  end
else
  -- It was not: consume its sequence so a late delivery is a no-op.
  redis.call('SET', KEYS[2], ARGV[2])
end
return 'OK'
