-- Compare-and-set of one game state on its version.
-- KEYS[1] game_states  KEYS[2] game_versions  KEYS[3] finished_games  KEYS[4] room_events
-- ARGV[1] room  ARGV[2] expected version  ARGV[3] new version  ARGV[4] game state JSON
-- ARGV[5] finished-at ms, or '' while running  ARGV[6] room_events envelope JSON
-- KEYS[5] module_matches  KEYS[6] game_modules (room -> module version)
-- ARGV[7] the match's module version (a migration changes it)
-- KEYS[7] the room's log (a stream of its recent envelopes, by version)
-- ARGV[8] the room's channel  ARGV[9] how long the log outlives its last entry (ms)
-- KEYS[8] the match log (a list, kept as long as the game)  ARGV[10..] its new entries (JSON)
-- Returns {0, ''} for no such game, {1, stored version} on conflict, {2, new version} when written.
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not current then return {0, ''} end
if current ~= ARGV[2] then return {1, current} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local previous = redis.call('HGET', KEYS[6], ARGV[1])
if previous and previous ~= ARGV[7] then
  -- Migrated: the match now counts for its new version.
  redis.call('HINCRBY', KEYS[5], previous, -1)
  redis.call('HINCRBY', KEYS[5], ARGV[7], 1)
  redis.call('HSET', KEYS[6], ARGV[1], ARGV[7])
end
if ARGV[5] ~= '' then
  -- The first write of a finished state ends the match: one fewer running on its module.
  if not redis.call('ZSCORE', KEYS[3], ARGV[1]) then redis.call('HINCRBY', KEYS[5], ARGV[7], -1) end
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
end
-- The room's own channel reaches the instances that hold its players; the log lets one that
-- subscribed late, or missed messages while its connection was down, catch up in order.
-- (pcall: an entry older than the log's newest, after a restore, is not worth failing for.)
-- The inputs that led here, in the same step as the state they produced.
if #ARGV >= 10 then redis.call('RPUSH', KEYS[8], unpack(ARGV, 10)) end
redis.pcall('XADD', KEYS[7], 'MAXLEN', '64', ARGV[3] .. '-0', 'e', ARGV[6])
redis.call('PEXPIRE', KEYS[7], ARGV[9])
redis.call('PUBLISH', ARGV[8], ARGV[6])
-- The original's fleet-wide channel, for outside tools (no instance reads it).
redis.call('PUBLISH', KEYS[4], ARGV[6])
return {2, ARGV[3]}
