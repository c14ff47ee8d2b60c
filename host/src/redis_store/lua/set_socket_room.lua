-- Records which room a socket plays in, whichever instance holds it.
-- KEYS[1] the mappings of the instance's sockets: `socket_mappings`, or on a cluster the
-- instance's own hash   ARGV[1] socket   ARGV[2] room, or '' for none
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local m = cjson.decode(raw)
if ARGV[2] == '' then m.roomId = nil else m.roomId = ARGV[2] end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(m))
return 1
