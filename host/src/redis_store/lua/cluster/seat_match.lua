-- On a cluster, the second step of a new match, in the fleet's slot: its record, its count on
-- its module version, and its players' sessions naming it. (`seats.lua` is prepended.)
-- KEYS[1] matches  KEYS[2] module_matches  KEYS[3] finished_games  KEYS[4] queued
-- KEYS[5..] the sessions of its players (bots have none)
-- ARGV[1] room  ARGV[2] match record JSON  ARGV[3] module version  ARGV[4] key prefix
-- Returns {'stored'}, or {'playing', player, room} (nothing stored) when one of its players is
-- seated in another running match.
local prefix = ARGV[4]
local refused = seated_elsewhere(5, ARGV[1], prefix, function(room)
  return redis.call('HEXISTS', KEYS[1], room) == 1 and not redis.call('ZSCORE', KEYS[3], room)
end)
if refused then return refused end
-- Counted once, though seated again (a write-back after an outage makes both steps again).
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
seat(5, ARGV[1], prefix, KEYS[4])
return {'stored'}
