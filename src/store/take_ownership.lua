-- Take ownership of a venue-day and read its reservations, atomically.
-- KEYS[1] owner epoch, KEYS[2] last applied sequence, KEYS[3] reservations hash.
-- Returns { new epoch, id1, json1, id2, json2, ... }.
local epoch = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], '0')
local reservations = redis.call('HGETALL', KEYS[3])
table.insert(reservations, 1, epoch)
return reservations
