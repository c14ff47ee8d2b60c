-- Makes a socket the player's current one and cancels its expiry.
-- KEYS[1] session:<player>  KEYS[2] session_expiry
-- ARGV[1] socket  ARGV[2] TTL seconds  ARGV[3] player  ARGV[4] the session to create if none
-- ARGV[5] the instance holding the socket
local raw = redis.call('GET', KEYS[1]) or ARGV[4]
local s = cjson.decode(raw)
s.socketId = ARGV[1]
s.instanceId = ARGV[5]
s.expiresAt = nil
local out = cjson.encode(s)
redis.call('SET', KEYS[1], out, 'EX', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
return out
