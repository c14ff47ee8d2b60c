-- Shared by the scripts that seat a match's players (prepended to them, see `Scripts::load`).
-- The players are KEYS[first..]: their sessions (`<prefix>session:<player>`).

local function player_of(session_key, prefix)
  return string.sub(session_key, #prefix + #'session:' + 1)
end

-- {'playing', player, other room} for the first player seated in another running match
-- (`running(room)` says whether a match runs), else nil: a player never plays two at once.
local function seated_elsewhere(first, room, prefix, running)
  for i = first, #KEYS do
    local raw = redis.call('GET', KEYS[i])
    local other = raw and cjson.decode(raw).roomId
    if type(other) == 'string' and other ~= room and running(other) then
      return {'playing', player_of(KEYS[i], prefix), other}
    end
  end
  return nil
end

-- Names `room` in each player's session, and takes out of its queue any player who queued
-- again on another connection while this match was being made.
local function seat(first, room, prefix, queued)
  for i = first, #KEYS do
    local raw = redis.call('GET', KEYS[i])
    if raw then
      local s = cjson.decode(raw)
      s.roomId = room
      redis.call('SET', KEYS[i], cjson.encode(s), 'KEEPTTL')
    end
    local player = player_of(KEYS[i], prefix)
    local entry = redis.call('HGET', queued, player)
    if entry then
      local q = cjson.decode(entry)
      redis.call('LREM', prefix .. 'waiting:' .. (q.lane or '') .. 'level:' .. q.level, 0, q.entry)
      redis.call('HDEL', queued, player)
    end
  end
end
