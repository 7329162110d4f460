-- Take ownership of a venue-day and read its reservations, atomically.
-- owner_epoch_key: the day's owner epoch, applied_key: the last batch
-- sequence applied, reservations: its reservations hash (commit.lua).
-- Returns { new epoch, id1, json1, id2, json2, ... }.
local epoch = redis.call('INCR', owner_epoch_key)
redis.call('SET', applied_key, '0')
local held = redis.call('HGETALL', reservations)
table.insert(held, 1, epoch)
return held
