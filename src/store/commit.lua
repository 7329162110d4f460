-- Commit one venue-day's batch, all or nothing, in one atomic script call.
-- KEYS[1] the venue-day's partition kill-switch flag ("1" = engaged)
-- KEYS[2] the venue-day's owner epoch (fencing token)
-- KEYS[3] the last batch sequence applied under that epoch
-- KEYS[4] the venue-day's reservations hash (id -> JSON)
-- KEYS[5] the partition's audit log (sorted set: score unix µs, member "<id> <JSON>")
-- ARGV[1] epoch, ARGV[2] sequence, ARGV[3] "1" when the kill switch stops
-- this batch (bookings, cancellations; "0" for check-ins), ARGV[4] n = number
-- of reservations, then n id, JSON pairs, then score, member pairs of audit
-- entries. Checks come first and nothing is written unless all pass.
if ARGV[3] == '1' and redis.call('GET', KEYS[1]) == '1' then
  return 'KILL_SWITCH'
end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 'FENCED'
end
local applied = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[2]) <= applied then
  -- This batch (or a later one) is already applied: a retry is a no-op.
  return 'OK'
end
local reservations_end = 4 + 2 * tonumber(ARGV[4])
for i = 5, reservations_end, 2 do
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
end
for i = reservations_end + 1, #ARGV, 2 do
  redis.call('ZADD', KEYS[5], ARGV[i], ARGV[i + 1])
end
redis.call('SET', KEYS[3], ARGV[2])
return 'OK'
