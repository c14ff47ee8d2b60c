-- Makes a version the active one of its game, and tells every instance, in one step.
-- KEYS[1] active_modules  KEYS[2] module_events   ARGV[1] game  ARGV[2] version  ARGV[3] event JSON
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
