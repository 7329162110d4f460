-- Commit one venue-day's batch, all or nothing, in one atomic script call.
-- Keys and fixed arguments are named in src/store/redis/scripts.rs:
-- kill_switch_flag: the venue-day's partition kill-switch flag ("1" = engaged);
-- owner_epoch_key: the venue-day's owner epoch (fencing token);
-- applied_key: the last batch sequence applied under that epoch;
-- reservations: the venue-day's reservations hash (id -> JSON);
-- audit_log: the partition's audit log (sorted set: score unix µs, member
-- "<id> <JSON>"); outbox: the partition's mail outbox (hash: mail id ->
-- JSON); pending_by_next_try and pending_by_due: its pending mail by next
-- try and by first due time (sorted sets: score unix ms, member mail id);
-- withdrawn: its withdrawn reminders (hash: mail id -> "<next ms> <due
-- ms>"); reminded_mark: the venue-day's "reminders queued" mark; changes:
-- the partition's change stream (what other processes follow).
-- epoch, sequence; stops_with_kill_switch: "1" when the kill switch stops
-- this batch (bookings, cancellations; "0" for check-ins);
-- reservation_count n, audit_count a, mail_count m; marks_reminded: "1"
-- when the batch queues the day's reminders; day: "<venue>/<date>";
-- changes_kept_ms: how long the change stream keeps an entry (by Redis's
-- clock; trimmed about then); commit_by_ms: the batch's commit deadline
-- (unix ms, by Redis's clock: the earliest of its bookings'), or "".
-- After TAIL: n id, JSON pairs, a score, member pairs, m (id, JSON, next
-- ms, due ms) quadruples, then the ids of reminders to withdraw. Checks
-- come first and nothing is written unless all pass.
-- The oldest stream entry id to keep: `kept_ms` before Redis's now.
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function oldest_kept(kept_ms)
  return tostring(now_ms - tonumber(kept_ms)) .. '-0'
end
if stops_with_kill_switch == '1' and redis.call('GET', kill_switch_flag) == '1' then
  return 'KILL_SWITCH'
end
if redis.call('GET', owner_epoch_key) ~= epoch then
  return 'FENCED'
end
local applied = tonumber(redis.call('GET', applied_key) or '0')
if tonumber(sequence) <= applied then
  -- This batch (or a later one) is already applied: a retry is a no-op.
  return 'OK'
end
-- A booking's dose claim has ended, or whoever forwarded it gave up: the
-- batch is too late (a retry of an applied batch is answered above).
if commit_by_ms ~= '' and now_ms > tonumber(commit_by_ms) then
  return 'PAST_DEADLINE'
end
local reservations_end = TAIL + 2 * tonumber(reservation_count)
local audit_end = reservations_end + 2 * tonumber(audit_count)
local mail_end = audit_end + 4 * tonumber(mail_count)
local changed = {}
for i = TAIL + 1, reservations_end, 2 do
  redis.call('HSET', reservations, ARGV[i], ARGV[i + 1])
  changed[#changed + 1] = ARGV[i]
end
if #changed > 0 then
  -- One entry per batch: its reservation ids, one per line (followers read
  -- the records from the day's hash: the entry stays small in the AOF), and
  -- the owner epoch it was committed under (an actor of another process
  -- that loaded the day under an earlier one holds a stale day).
  redis.call('XADD', changes, 'MINID', '~', oldest_kept(changes_kept_ms), '*',
    'day', day, 'ids', table.concat(changed, '\n'), 'epoch', epoch)
end
for i = reservations_end + 1, audit_end, 2 do
  redis.call('ZADD', audit_log, ARGV[i], ARGV[i + 1])
end
for i = audit_end + 1, mail_end, 4 do
  redis.call('HSET', outbox, ARGV[i], ARGV[i + 1])
  redis.call('ZADD', pending_by_next_try, ARGV[i + 2], ARGV[i])
  redis.call('ZADD', pending_by_due, ARGV[i + 3], ARGV[i])
end
for i = mail_end + 1, #ARGV do
  local id = ARGV[i]
  local due = redis.call('ZSCORE', pending_by_due, id)
  if due then
    -- Pending (not sent, not settled): never to be sent, unless this batch
    -- is abandoned (abandon.lua puts it back).
    local next_try = redis.call('ZSCORE', pending_by_next_try, id) or due
    redis.call('HSET', withdrawn, id, next_try .. ' ' .. due)
    redis.call('ZREM', pending_by_next_try, id)
    redis.call('ZREM', pending_by_due, id)
  end
end
if marks_reminded == '1' then
  redis.call('SET', reminded_mark, '1')
end
redis.call('SET', applied_key, sequence)
return 'OK'
