-- KEYS[1] session:<player>   ARGV[1] room, or '' for none
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local s = cjson.decode(raw)
if ARGV[1] == '' then s.roomId = nil else s.roomId = ARGV[1] end
redis.call('SET', KEYS[1], cjson.encode(s), 'KEEPTTL')
return 1
