-- Moves one due retry into the plugin's own delivery stream. Only the caller
-- whose ZREM succeeds moves it, so several instances can pump at once.
-- KEYS: retry zset, retry record hash, direct stream, retry counts hash
-- ARGV: member (plugin|record|topic), most entries kept in the direct stream
-- (approximate trimming)
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local plugin, topic = string.match(ARGV[1], '^([^|]*)|[^|]*|(.*)$')
if plugin then
  redis.call('HINCRBY', KEYS[4], plugin .. '|' .. topic, -1)
end
local record = redis.call('HGETALL', KEYS[2])
redis.call('DEL', KEYS[2])
if #record == 0 then
  return 0
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', unpack(record))
return 1
