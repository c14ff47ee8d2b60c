-- Registered instances whose heartbeat expired, each handed to exactly one reaper.
-- KEYS[1] instances   ARGV[1] key prefix   ARGV[2] the caller's own id
local dead = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if id ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. 'instance:' .. id) == 0 then
    redis.call('SREM', KEYS[1], id)
    table.insert(dead, id)
  end
end
return dead
