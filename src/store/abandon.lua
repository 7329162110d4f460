-- Make a batch whose commit outcome was unknown never applied.
-- KEYS[1] owner epoch, KEYS[2] last applied sequence, KEYS[3] reservations hash,
-- KEYS[4] the partition's audit log, KEYS[5] its mail outbox, KEYS[6] its
-- pending mail by next try, KEYS[7] by due time, KEYS[8] its withdrawn
-- reminders, KEYS[9] the day's "reminders queued" mark, KEYS[10] the
-- partition's change stream (see commit.lua).
-- ARGV[1] epoch, ARGV[2] sequence, ARGV[3] c = count of created ids,
-- ARGV[4] p = count of previous records, ARGV[5] a = count of audit
-- members, ARGV[6] m = count of mail ids, ARGV[7] "1" when it marked the
-- day reminded, ARGV[8] the venue-day, ARGV[9] how long the change
-- stream keeps an entry (ms); then the c ids, then p id, JSON
-- pairs of the records as they were before the batch, then the a audit
-- members, the m mail ids, and the ids of the reminders it withdrew.
-- The oldest stream entry id to keep: `kept_ms` before Redis's now.
local function oldest_kept(kept_ms)
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  return tostring(now_ms - tonumber(kept_ms)) .. '-0'
end
local created_end = 9 + tonumber(ARGV[3])
local previous_end = created_end + 2 * tonumber(ARGV[4])
local audit_end = previous_end + tonumber(ARGV[5])
local mail_end = audit_end + tonumber(ARGV[6])
-- Followers undo what they may have learnt of the batch: each record it
-- touched as the store holds it now (an id it does not hold, one per line,
-- is forgotten; a record it holds is put back as stored). Sent whatever
-- this call finds: the batch may have been read by followers from a master
-- that died before its replica copied it (seen by the nemesis: a process
-- showing a day full where the store held places free), and when another
-- owner took the day over meanwhile, what that owner loaded is the truth.
-- `epoch`: the owner epoch the store changed under (nil when fenced: the
-- store is unchanged).
local function tell_followers(epoch)
  local forgotten, restored = {}, {}
  local function told(id)
    local json = redis.call('HGET', KEYS[3], id)
    if json then
      restored[#restored + 1] = json
    else
      forgotten[#forgotten + 1] = id
    end
  end
  for i = 10, created_end do
    told(ARGV[i])
  end
  for i = created_end + 1, previous_end, 2 do
    told(ARGV[i])
  end
  if #forgotten > 0 or #restored > 0 then
    local entry = {'day', ARGV[8], 'forget', table.concat(forgotten, '\n'),
      'revert', table.concat(restored, '\n')}
    if epoch then
      entry[#entry + 1] = 'epoch'
      entry[#entry + 1] = epoch
    end
    redis.call('XADD', KEYS[10], 'MINID', '~', oldest_kept(ARGV[9]), '*', unpack(entry))
  end
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  tell_followers(nil)
  return 'FENCED'
end
local applied = tonumber(redis.call('GET', KEYS[2]) or '0')
if applied >= tonumber(ARGV[2]) then
  -- It was applied: revert it.
  for i = 10, created_end do
    redis.call('HDEL', KEYS[3], ARGV[i])
  end
  for i = created_end + 1, previous_end, 2 do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
  for i = previous_end + 1, audit_end do
    redis.call('ZREM', KEYS[4], ARGV[i])
  end
  for i = audit_end + 1, mail_end do
    redis.call('HDEL', KEYS[5], ARGV[i])
    redis.call('ZREM', KEYS[6], ARGV[i])
    redis.call('ZREM', KEYS[7], ARGV[i])
  end
  for i = mail_end + 1, #ARGV do
    local scores = redis.call('HGET', KEYS[8], ARGV[i])
    if scores then
      local next_try, due = string.match(scores, '^(%S+) (%S+)$')
      redis.call('ZADD', KEYS[6], next_try, ARGV[i])
      redis.call('ZADD', KEYS[7], due, ARGV[i])
      redis.call('HDEL', KEYS[8], ARGV[i])
    end
  end
  if ARGV[7] == '1' then
    redis.call('DEL', KEYS[9])
  end
else
  -- It was not: consume its sequence so a late delivery is a no-op.
  redis.call('SET', KEYS[2], ARGV[2])
end
tell_followers(ARGV[1])
return 'OK'
