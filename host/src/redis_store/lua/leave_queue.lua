-- Takes a player out of whichever queue holds it.
-- KEYS[1] queued   ARGV[1] player   ARGV[2] key prefix
-- Returns 1 if it was waiting, else 0.
local queued = redis.call('HGET', KEYS[1], ARGV[1])
if not queued then return 0 end
local q = cjson.decode(queued)
redis.call('LREM', ARGV[2] .. 'waiting:' .. (q.lane or '') .. 'level:' .. q.level, 0, q.entry)
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
