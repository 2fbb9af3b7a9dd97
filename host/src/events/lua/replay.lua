-- Moves a dead letter back into delivery as a first attempt.
-- KEYS: dead stream, direct stream; ARGV: dead letter id, then field/value pairs
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local fields = {}
for i = 2, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('XADD', KEYS[2], '*', unpack(fields))
return 1
