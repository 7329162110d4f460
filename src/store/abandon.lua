-- Make a batch whose commit outcome was unknown never applied.
-- KEYS[1] owner epoch, KEYS[2] last applied sequence, KEYS[3] reservations hash.
-- ARGV[1] epoch, ARGV[2] sequence, ARGV[3] count of created ids, then those ids,
-- then id, JSON pairs of the records as they were before the batch.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 'FENCED'
end
local applied = tonumber(redis.call('GET', KEYS[2]) or '0')
local sequence = tonumber(ARGV[2])
if applied >= sequence then
  -- It was applied: revert it.
  local created = tonumber(ARGV[3])
  for i = 4, 3 + created do
    redis.call('HDEL', KEYS[3], ARGV[i])
  end
  for i = 4 + created, #ARGV, 2 do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
else
  -- It was not: consume its sequence so a late delivery is a no-op.
  redis.call('SET', KEYS[2], ARGV[2])
end
return 'OK'
