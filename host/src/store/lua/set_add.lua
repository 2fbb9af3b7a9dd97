-- Adds ARGV members to the set KEYS[1]; returns the members that were new.
-- One script so "which were new" is answered atomically.
local added = {}
for _, member in ipairs(ARGV) do
  if redis.call('SADD', KEYS[1], member) == 1 then
    added[#added + 1] = member
  end
end
return added
