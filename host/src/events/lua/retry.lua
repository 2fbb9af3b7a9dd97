-- Acknowledges a failed delivery and parks it for a later attempt, atomically,
-- so the event is neither lost nor delivered twice by this step.
-- KEYS: source stream, retry zset, retry record hash
-- ARGV: group, entry id, due (ms), member, then field/value pairs of the record
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local fields = {}
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[3], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
