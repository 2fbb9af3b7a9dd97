-- Acknowledges a delivery that will not be tried again and keeps it as a dead letter.
-- KEYS: source stream, dead stream
-- ARGV: group, entry id, max dead letters, then field/value pairs
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local fields = {}
for i = 4, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(fields))
