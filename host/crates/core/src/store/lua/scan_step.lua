-- One SCAN step on the node holding KEYS[1] (a key of the tenant's slot, so a
-- cluster routes the script there), with each key found and its PTTL.
-- ARGV[1]: the cursor; ARGV[2]: the MATCH pattern. Returns
-- {next cursor, key, pttl, key, pttl, ...}; the caller loops until "0".
local reply = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 500)
local out = { reply[1] }
for _, key in ipairs(reply[2]) do
  out[#out + 1] = key
  out[#out + 1] = redis.call('PTTL', key)
end
return out
