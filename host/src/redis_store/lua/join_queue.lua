-- Queues a player in a lane at a level, or pairs it with the longest-waiting live player there.
-- KEYS[1] waiting:<lane>level:<n>   KEYS[2] queued (player -> {"level","lane","instance","entry"})
-- ARGV[1] player  ARGV[2] entry JSON  ARGV[3] level  ARGV[4] queued JSON
-- ARGV[5] key prefix  ARGV[6] TTL of the queue keys, seconds  ARGV[7] lane
-- Returns the opponent's entry JSON, or false when the player now waits.
local queued = redis.call('HGET', KEYS[2], ARGV[1])
if queued then
  local q = cjson.decode(queued)
  local lane = q.lane or ''
  if q.level == ARGV[3] and lane == ARGV[7] then return false end -- already waiting here: keeps its place
  redis.call('LREM', ARGV[5] .. 'waiting:' .. lane .. 'level:' .. q.level, 0, q.entry)
  redis.call('HDEL', KEYS[2], ARGV[1])
end
while true do
  local other = redis.call('LPOP', KEYS[1])
  if not other then break end
  local o = cjson.decode(other)
  local info = redis.call('HGET', KEYS[2], o.id)
  redis.call('HDEL', KEYS[2], o.id)
  -- An entry whose instance stopped heartbeating is a ghost: drop it and look further.
  if info and o.id ~= ARGV[1] then
    local instance = cjson.decode(info).instance
    if redis.call('EXISTS', ARGV[5] .. 'instance:' .. instance) == 1 then
      return other
    end
  end
end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return false
