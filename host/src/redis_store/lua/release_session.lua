-- Lets a socket go if it is still the player's current one; the session then expires.
-- KEYS[1] session:<player>  KEYS[2] session_expiry
-- ARGV[1] socket  ARGV[2] expires-at ms  ARGV[3] player  ARGV[4] key TTL ms
-- Returns the released session JSON, or false.
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local s = cjson.decode(raw)
if s.socketId ~= ARGV[1] then return false end
s.socketId = nil
s.expiresAt = tonumber(ARGV[2])
local out = cjson.encode(s)
redis.call('SET', KEYS[1], out, 'PX', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return out
