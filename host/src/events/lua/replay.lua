-- Moves a dead letter back into delivery as a first attempt.
-- KEYS: dead stream, direct stream, dead counts hash
-- ARGV: dead letter id, most entries kept in the direct stream, counter field
--       (plugin|topic), then field/value pairs
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HINCRBY', KEYS[3], ARGV[3], -1)
local fields = {}
for i = 4, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
return 1
