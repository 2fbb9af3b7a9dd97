-- Adds ARGV[2..] to the set KEYS[1]; returns the members that were new, or -1
-- (and adds nothing) when the set would grow past ARGV[1] members.
-- One script so "which were new" and the cap are answered atomically.
local cap = tonumber(ARGV[1])
local new = {}
for i = 2, #ARGV do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 0 then
    new[#new + 1] = ARGV[i]
  end
end
if #new > 0 and redis.call('SCARD', KEYS[1]) + #new > cap then
  return -1
end
local added = {}
for _, member in ipairs(new) do
  if redis.call('SADD', KEYS[1], member) == 1 then
    added[#added + 1] = member
  end
end
return added
