-- One matchmaking decision for one queue, atomically: a player joins it, or (no player) the
-- queue's clock is looked at. Mirrors `matchmaking::decide`.
-- KEYS[1] waiting:<lane>level:<n>   KEYS[2] queued (player -> {"level","lane","instance","entry","at"})
-- KEYS[3] the joiner's session   KEYS[4] game_versions   KEYS[5] finished_games
-- ARGV[1] player ('' when nobody joins)  ARGV[2] entry JSON  ARGV[3] level  ARGV[4] instance
-- ARGV[5] key prefix  ARGV[6] TTL of the queue keys, seconds  ARGV[7] lane
-- ARGV[8] min seats  ARGV[9] max seats  ARGV[10] fill after, ms
-- Returns {'wait'} when nobody leaves the queue, or {'match', entry JSON...}: the waiting
-- players (oldest first) who leave it together with the joiner; or {'playing', room} when the
-- joiner's session names a match still running (seated while its request to join was on its
-- way: it must not be seated twice).
local player, lane, level = ARGV[1], ARGV[7], ARGV[3]
local min, max, fill = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

if player ~= '' then
  local session = redis.call('GET', KEYS[3])
  local room = session and cjson.decode(session).roomId
  if type(room) == 'string' and redis.call('HEXISTS', KEYS[4], room) == 1
      and not redis.call('ZSCORE', KEYS[5], room) then
    return {'playing', room}
  end
  local queued = redis.call('HGET', KEYS[2], player)
  if queued then
    local q = cjson.decode(queued)
    local was = q.lane or ''
    if q.level == level and was == lane then return {'wait'} end -- already here: keeps its place
    redis.call('LREM', ARGV[5] .. 'waiting:' .. was .. 'level:' .. q.level, 0, q.entry)
    redis.call('HDEL', KEYS[2], player)
  end
end

-- The live players waiting here, oldest first. An entry whose instance stopped heartbeating is
-- a ghost, and so is one whose player now waits elsewhere: both are dropped on the way.
local live = {}
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local id = cjson.decode(raw).id
  local info = redis.call('HGET', KEYS[2], id)
  local q = info and cjson.decode(info)
  local here = q and q.level == level and (q.lane or '') == lane and q.entry == raw
  if here and redis.call('EXISTS', ARGV[5] .. 'instance:' .. q.instance) == 1 then
    table.insert(live, {raw = raw, id = id, at = tonumber(q.at) or now})
  else
    redis.call('LREM', KEYS[1], 0, raw)
    if here then redis.call('HDEL', KEYS[2], id) end
  end
end

local joiner = (player ~= '') and 1 or 0
local seated = #live + joiner
local take = nil
if seated >= max then
  take = max
elseif seated >= math.max(min, 1) and #live > 0 and now - live[1].at >= fill then
  take = seated
end
if take then
  local out = {'match'}
  for k = 1, take - joiner do
    redis.call('LREM', KEYS[1], 1, live[k].raw)
    redis.call('HDEL', KEYS[2], live[k].id)
    table.insert(out, live[k].raw)
  end
  return out
end
if player == '' then return {'wait'} end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('HSET', KEYS[2], player, cjson.encode({
  level = level, lane = lane, instance = ARGV[4], entry = ARGV[2], at = now
}))
redis.call('EXPIRE', KEYS[2], ARGV[6])
return {'wait'}
