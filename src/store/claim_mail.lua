-- Claim up to a number of due mails of one partition for one worker.
-- KEYS[1] the partition's pending mail by next try (sorted set, unix ms),
-- KEYS[2] its mail outbox (hash: id -> JSON).
-- ARGV[1] now (unix ms), ARGV[2] most mails, ARGV[3] lease (ms).
-- A claimed mail's next try moves to the lease's end: if the worker dies
-- before settling it, it is due again then, for any worker.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local until_ms = tonumber(ARGV[1]) + tonumber(ARGV[3])
local claimed = {}
for _, id in ipairs(ids) do
  local json = redis.call('HGET', KEYS[2], id)
  if json then
    redis.call('ZADD', KEYS[1], until_ms, id)
    table.insert(claimed, json)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return claimed
