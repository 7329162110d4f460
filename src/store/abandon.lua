-- Make a batch whose commit outcome was unknown never applied.
-- Keys and fixed arguments are named in src/store/redis/scripts.rs, the
-- keys as in commit.lua (without the kill-switch flag).
-- epoch, sequence: the batch's; created_count c, previous_count p,
-- audit_count a, mail_count m; marked_reminded: "1" when it marked the day
-- reminded; day: the venue-day; changes_kept_ms: how long the change
-- stream keeps an entry. After TAIL: the c ids, then p id, JSON pairs of
-- the records as they were before the batch, then the a audit members, the
-- m mail ids, and the ids of the reminders it withdrew.
-- The oldest stream entry id to keep: `kept_ms` before Redis's now.
local function oldest_kept(kept_ms)
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  return tostring(now_ms - tonumber(kept_ms)) .. '-0'
end
local created_end = TAIL + tonumber(created_count)
local previous_end = created_end + 2 * tonumber(previous_count)
local audit_end = previous_end + tonumber(audit_count)
local mail_end = audit_end + tonumber(mail_count)
-- Followers undo what they may have learnt of the batch: each record it
-- touched as the store holds it now (an id it does not hold, one per line,
-- is forgotten; a record it holds is put back as stored). Sent whatever
-- this call finds: the batch may have been read by followers from a master
-- that died before its replica copied it (seen by the nemesis: a process
-- showing a day full where the store held places free), and when another
-- owner took the day over meanwhile, what that owner loaded is the truth.
-- `changed_under`: the owner epoch the store changed under (nil when
-- fenced: the store is unchanged).
local function tell_followers(changed_under)
  local forgotten, restored = {}, {}
  local function told(id)
    local json = redis.call('HGET', reservations, id)
    if json then
      restored[#restored + 1] = json
    else
      forgotten[#forgotten + 1] = id
    end
  end
  for i = TAIL + 1, created_end do
    told(ARGV[i])
  end
  for i = created_end + 1, previous_end, 2 do
    told(ARGV[i])
  end
  if #forgotten > 0 or #restored > 0 then
    local entry = {'day', day, 'forget', table.concat(forgotten, '\n'),
      'revert', table.concat(restored, '\n')}
    if changed_under then
      entry[#entry + 1] = 'epoch'
      entry[#entry + 1] = changed_under
    end
    redis.call('XADD', changes, 'MINID', '~', oldest_kept(changes_kept_ms), '*', unpack(entry))
  end
end
if redis.call('GET', owner_epoch_key) ~= epoch then
  tell_followers(nil)
  return 'FENCED'
end
local applied = tonumber(redis.call('GET', applied_key) or '0')
if applied >= tonumber(sequence) then
  -- It was applied: revert it.
  for i = TAIL + 1, created_end do
    redis.call('HDEL', reservations, ARGV[i])
  end
  for i = created_end + 1, previous_end, 2 do
    redis.call('HSET', reservations, ARGV[i], ARGV[i + 1])
  end
  for i = previous_end + 1, audit_end do
    redis.call('ZREM', audit_log, ARGV[i])
  end
  for i = audit_end + 1, mail_end do
    redis.call('HDEL', outbox, ARGV[i])
    redis.call('ZREM', pending_by_next_try, ARGV[i])
    redis.call('ZREM', pending_by_due, ARGV[i])
  end
  for i = mail_end + 1, #ARGV do
    local scores = redis.call('HGET', withdrawn, ARGV[i])
    if scores then
      local next_try, due = string.match(scores, '^(%S+) (%S+)$')
      redis.call('ZADD', pending_by_next_try, next_try, ARGV[i])
      redis.call('ZADD', pending_by_due, due, ARGV[i])
      redis.call('HDEL', withdrawn, ARGV[i])
    end
  end
  if marked_reminded == '1' then
    redis.call('DEL', reminded_mark)
  end
else
  -- It was not: consume its sequence so a late delivery is a no-op.
  redis.call('SET', applied_key, sequence)
end
tell_followers(epoch)
return 'OK'
