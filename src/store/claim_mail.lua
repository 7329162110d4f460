-- Claim up to a number of due mails of one partition for one worker.
-- KEYS[1] the partition's pending mail by next try (sorted set, unix ms),
-- KEYS[2] its mail outbox (hash: id -> JSON), KEYS[3] its claims (hash:
-- id -> the token of the claim that holds it).
-- ARGV[1] now (unix ms), ARGV[2] most mails, ARGV[3] lease (ms), ARGV[4]
-- this claim's token.
-- A claimed mail's next try moves to the lease's end: if the worker dies
-- before settling it, it is due again then, for any worker, whose claim
-- then replaces this one's token (hold_mail.lua and settle_mail.lua refuse
-- the old one).
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[3])
local claimed = {}
for _, id in ipairs(ids) do
  local json = redis.call('HGET', KEYS[2], id)
  if json then
    redis.call('ZADD', KEYS[1], until_ms, id)
    redis.call('HSET', KEYS[3], id, ARGV[4])
    table.insert(claimed, json)
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
return claimed
