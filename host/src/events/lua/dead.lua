-- Acknowledges a delivery that will not be tried again and keeps it as a dead letter.
-- KEYS: source stream, dead stream, dead counts hash
-- ARGV: group, entry id, max dead letters, counter field (plugin|topic),
--       then field/value pairs
-- Returns the dead letter's id, or false when XACK found nothing (another
-- instance took the entry over and settled it): then nothing is kept.
-- The counts per subscription are kept here, exactly, so figures never need
-- the stream read: the oldest letters past the maximum are dropped one by one.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return false
end
local fields = {}
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
local max = tonumber(ARGV[3])
while redis.call('XLEN', KEYS[2]) > max do
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  local plugin, topic
  local pairs_ = oldest[2]
  for i = 1, #pairs_, 2 do
    if pairs_[i] == 'plugin' then plugin = pairs_[i + 1] end
    if pairs_[i] == 'topic' then topic = pairs_[i + 1] end
  end
  redis.call('XDEL', KEYS[2], oldest[1])
  if plugin and topic then
    redis.call('HINCRBY', KEYS[3], plugin .. '|' .. topic, -1)
  end
end
return id
