-- Claim up to a number of due mails of one partition for one worker.
-- pending_by_next_try: the partition's pending mail by next try (sorted
-- set, unix ms), outbox: its mail (hash: id -> JSON), claims: its claims
-- (hash: id -> the token of the claim that holds it). now_ms, most: mails
-- at most, lease_ms, token: this claim's.
-- A claimed mail's next try moves to the lease's end: if the worker dies
-- before settling it, it is due again then, for any worker, whose claim
-- then replaces this one's token (hold_mail.lua and settle_mail.lua refuse
-- the old one).
local ids = redis.call('ZRANGEBYSCORE', pending_by_next_try, '-inf', now_ms, 'LIMIT', 0, tonumber(most))
local until_ms = tonumber(now_ms) + tonumber(lease_ms)
local claimed = {}
for _, id in ipairs(ids) do
  local json = redis.call('HGET', outbox, id)
  if json then
    redis.call('ZADD', pending_by_next_try, until_ms, id)
    redis.call('HSET', claims, id, token)
    table.insert(claimed, json)
  else
    redis.call('ZREM', pending_by_next_try, id)
    redis.call('HDEL', claims, id)
  end
end
return claimed
