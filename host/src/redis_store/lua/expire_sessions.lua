-- Takes (at most 100) sessions whose grace ran out; each goes to exactly one caller.
-- KEYS[1] session_expiry   ARGV[1] now ms   ARGV[2] key prefix
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
local out = {}
for _, player in ipairs(due) do
  redis.call('ZREM', KEYS[1], player)
  local key = ARGV[2] .. 'session:' .. player
  local raw = redis.call('GET', key)
  if raw then
    local s = cjson.decode(raw)
    if s.socketId == nil or s.socketId == cjson.null then
      redis.call('DEL', key)
      table.insert(out, raw)
    end
  end
end
return out
