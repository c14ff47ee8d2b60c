-- On a cluster, the first step of a new match, in its room's slot: the game, its first log
-- entries, and its announcement. Nobody follows a room before its players are seated (the
-- second step, `seat_match.lua`), so nobody hears it if the seating is refused.
-- KEYS[1] game:{<room>} (hash)  KEYS[2] the room's log (stream)  KEYS[3] the match log (list)
-- ARGV[1] game state JSON  ARGV[2] version  ARGV[3] module version  ARGV[4] envelope JSON
-- ARGV[5] the room's channel  ARGV[6] the room log's lifetime (ms)  ARGV[7..] log entries (JSON)
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'version', ARGV[2], 'module', ARGV[3])
if #ARGV >= 7 then redis.call('RPUSH', KEYS[3], unpack(ARGV, 7)) end
redis.pcall('XADD', KEYS[2], 'MAXLEN', '64', ARGV[2] .. '-0', 'e', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('SPUBLISH', ARGV[5], ARGV[4])
return 1
