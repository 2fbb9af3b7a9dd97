-- Acknowledges a failed delivery and parks it for a later attempt, atomically,
-- so the event is neither lost nor delivered twice by this step.
-- KEYS: source stream, retry zset, retry record hash, retry counts hash
-- ARGV: group, entry id, due (ms), member, counter field (plugin|topic),
--       then field/value pairs of the record
-- Only the holder of the entry parks it: when XACK finds nothing (another
-- instance took the entry over and finished it), nothing is parked.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
local fields = {}
for i = 6, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[3], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
return 1
