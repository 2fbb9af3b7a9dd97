-- Moves one due retry into the plugin's own delivery stream. Only the caller
-- whose ZREM succeeds moves it, so several instances can pump at once.
-- KEYS: retry zset, retry record hash, direct stream
-- ARGV: member
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local record = redis.call('HGETALL', KEYS[2])
redis.call('DEL', KEYS[2])
if #record == 0 then
  return 0
end
redis.call('XADD', KEYS[3], '*', unpack(record))
return 1
