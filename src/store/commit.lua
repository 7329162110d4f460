-- Commit one venue-day's batch, all or nothing, in one atomic script call.
-- KEYS[1] the venue-day's partition kill-switch flag ("1" = engaged)
-- KEYS[2] the venue-day's owner epoch (fencing token)
-- KEYS[3] the last batch sequence applied under that epoch
-- KEYS[4] the venue-day's reservations hash (id -> JSON)
-- KEYS[5] the partition's audit log (sorted set: score unix µs, member "<id> <JSON>")
-- KEYS[6] the partition's mail outbox (hash: mail id -> JSON)
-- KEYS[7] its pending mail by next try (sorted set: score unix ms, member mail id)
-- KEYS[8] its pending mail by first due time (sorted set, the same)
-- KEYS[9] its withdrawn reminders (hash: mail id -> "<next ms> <due ms>")
-- KEYS[10] the venue-day's "reminders queued" mark
-- KEYS[11] the partition's change stream (what other processes follow)
-- ARGV[1] epoch, ARGV[2] sequence, ARGV[3] "1" when the kill switch stops
-- this batch (bookings, cancellations; "0" for check-ins), ARGV[4] n = number
-- of reservations, ARGV[5] a = number of audit entries, ARGV[6] m = number of
-- mails, ARGV[7] "1" when the batch queues the day's reminders (mark the
-- day), ARGV[8] the venue-day ("<venue>/<date>"), ARGV[9] how long the change
-- stream keeps an entry (ms, by Redis's clock; trimmed about then), ARGV[10]
-- the batch's commit deadline (unix ms, by Redis's clock: the earliest of its
-- bookings'), or ""; then n id, JSON pairs, a score, member
-- pairs, m (id, JSON, next ms, due ms) quadruples, then the ids of reminders
-- to withdraw. Checks come first and nothing is written unless all pass.
-- The oldest stream entry id to keep: `kept_ms` before Redis's now.
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function oldest_kept(kept_ms)
  return tostring(now_ms - tonumber(kept_ms)) .. '-0'
end
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
-- A booking's dose claim has ended, or whoever forwarded it gave up: the
-- batch is too late (a retry of an applied batch is answered above).
if ARGV[10] ~= '' and now_ms > tonumber(ARGV[10]) then
  return 'PAST_DEADLINE'
end
local reservations_end = 10 + 2 * tonumber(ARGV[4])
local audit_end = reservations_end + 2 * tonumber(ARGV[5])
local mail_end = audit_end + 4 * tonumber(ARGV[6])
local changed = {}
for i = 11, reservations_end, 2 do
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
  changed[#changed + 1] = ARGV[i]
end
if #changed > 0 then
  -- One entry per batch: its reservation ids, one per line (followers read
  -- the records from the day's hash: the entry stays small in the AOF), and
  -- the owner epoch it was committed under (an actor of another process
  -- that loaded the day under an earlier one holds a stale day).
  redis.call('XADD', KEYS[11], 'MINID', '~', oldest_kept(ARGV[9]), '*',
    'day', ARGV[8], 'ids', table.concat(changed, '\n'), 'epoch', ARGV[1])
end
for i = reservations_end + 1, audit_end, 2 do
  redis.call('ZADD', KEYS[5], ARGV[i], ARGV[i + 1])
end
for i = audit_end + 1, mail_end, 4 do
  redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[7], ARGV[i + 2], ARGV[i])
  redis.call('ZADD', KEYS[8], ARGV[i + 3], ARGV[i])
end
for i = mail_end + 1, #ARGV do
  local id = ARGV[i]
  local due = redis.call('ZSCORE', KEYS[8], id)
  if due then
    -- Pending (not sent, not settled): never to be sent, unless this batch
    -- is abandoned (abandon.lua puts it back).
    local next_try = redis.call('ZSCORE', KEYS[7], id) or due
    redis.call('HSET', KEYS[9], id, next_try .. ' ' .. due)
    redis.call('ZREM', KEYS[7], id)
    redis.call('ZREM', KEYS[8], id)
  end
end
if ARGV[7] == '1' then
  redis.call('SET', KEYS[10], '1')
end
redis.call('SET', KEYS[3], ARGV[2])
return 'OK'
