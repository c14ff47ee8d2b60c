-- Stores a new match and announces it, in one step (so its announcement precedes any change's).
-- KEYS[1] matches  KEYS[2] game_states  KEYS[3] game_versions  KEYS[4] room_events
-- ARGV[1] room  ARGV[2] match record JSON  ARGV[3] game state JSON  ARGV[4] version
-- ARGV[5] room_events envelope JSON   ARGV[6] the module version the match runs
-- KEYS[5] module_matches (running matches per module version)  KEYS[6] game_modules
-- KEYS[7] the room's log  ARGV[7] the room's channel  ARGV[8] the log's lifetime (ms)
-- KEYS[8] the match log (a list, kept as long as the game)  ARGV[10..] its first entries (JSON)
-- KEYS[9] finished_games  KEYS[10] queued  ARGV[9] key prefix
-- KEYS[11..] the sessions of its players (bots have none): each names the match now
-- Returns {'stored'}, or {'playing', player, room} (nothing stored) when one of its players was
-- seated in another running match meanwhile: a player never plays two at once.
-- (`seats.lua` is prepended.)
local prefix = ARGV[9]
local refused = seated_elsewhere(11, ARGV[1], prefix, function(room)
  return redis.call('HEXISTS', KEYS[3], room) == 1 and not redis.call('ZSCORE', KEYS[9], room)
end)
if refused then return refused end

redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[6], ARGV[1], ARGV[6])
redis.call('HINCRBY', KEYS[5], ARGV[6], 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
seat(11, ARGV[1], prefix, KEYS[10])
if #ARGV >= 10 then redis.call('RPUSH', KEYS[8], unpack(ARGV, 10)) end
redis.pcall('XADD', KEYS[7], 'MAXLEN', '64', ARGV[4] .. '-0', 'e', ARGV[5])
redis.call('PEXPIRE', KEYS[7], ARGV[8])
redis.call('PUBLISH', ARGV[7], ARGV[5])
redis.call('PUBLISH', KEYS[4], ARGV[5])
return {'stored'}
