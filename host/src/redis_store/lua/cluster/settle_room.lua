-- On a cluster, the fleet's records of a match told what its room's last write did, in the
-- fleet's slot: a change of module version, or its end. Telling an end twice changes nothing.
-- KEYS[1] module_matches  KEYS[2] finished_games
-- ARGV[1] room  ARGV[2] its module version  ARGV[3] the version it ran before, or ''
-- ARGV[4] when it ended (ms), or '' while it runs
if ARGV[3] ~= '' then
  redis.call('HINCRBY', KEYS[1], ARGV[3], -1)
  redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
end
if ARGV[4] ~= '' and not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('HINCRBY', KEYS[1], ARGV[2], -1)
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
return 1
