-- On a cluster, compare-and-set of one game state on its version, in its room's slot: the
-- hot path, one script on the room's node.
-- KEYS[1] game:{<room>} (hash: state, version, module, finished)  KEYS[2] the room's log
-- KEYS[3] the match log
-- ARGV[1] expected version  ARGV[2] new version  ARGV[3] game state JSON
-- ARGV[4] finished-at ms, or '' while running  ARGV[5] envelope JSON  ARGV[6] module version
-- ARGV[7] the room's channel  ARGV[8] the room log's lifetime (ms)  ARGV[9..] log entries
-- Returns {0, '', 0} for no such game, {1, stored version, 0} on conflict, or, written,
-- {2, the module it ran before if it changed or '', 1 if this write ended the match else 0}:
-- what the fleet's records (`settle_room.lua`) must then be told.
local current = redis.call('HGET', KEYS[1], 'version')
if not current then return {0, '', 0} end
if current ~= ARGV[1] then return {1, current, 0} end
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'version', ARGV[2])
local previous = redis.call('HGET', KEYS[1], 'module')
local migrated = ''
if previous ~= ARGV[6] then
  redis.call('HSET', KEYS[1], 'module', ARGV[6])
  migrated = previous or ''
end
local ended = 0
if ARGV[4] ~= '' then ended = redis.call('HSETNX', KEYS[1], 'finished', ARGV[4]) end
if #ARGV >= 9 then redis.call('RPUSH', KEYS[3], unpack(ARGV, 9)) end
redis.pcall('XADD', KEYS[2], 'MAXLEN', '64', ARGV[2] .. '-0', 'e', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[8])
redis.call('SPUBLISH', ARGV[7], ARGV[5])
return {2, migrated, ended}
