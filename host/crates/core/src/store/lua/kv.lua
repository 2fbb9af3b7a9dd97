-- The writes of the plugins' `kv` interface, each in one step with the
-- tenant's ledger of stored bytes, so the two never disagree:
--   KEYS[1] the plugin's key, KEYS[2] the ledger (hash: key -> bytes, and
--   '#total'), KEYS[3] the keys that expire (sorted set by expiry, ms).
--   ARGV[1] the operation, ARGV[2] the tenant's quota in bytes, then its arguments.
-- Answers a table whose first element is 1 (done), 0 (refused: the quota
-- would be exceeded) or -1 (refused: the set would pass its cap).
-- A key counts its name plus its value, or plus its members; a counter 20.
-- Growth past the quota is refused; shrinking never is.
local key, ledger, expiry = KEYS[1], KEYS[2], KEYS[3]
local op, quota = ARGV[1], tonumber(ARGV[2])
local TOTAL = '#total'

local function forget(k)
  local counted = tonumber(redis.call('HGET', ledger, k) or '0')
  if counted ~= 0 then
    redis.call('HINCRBY', ledger, TOTAL, -counted)
    redis.call('HDEL', ledger, k)
  end
  redis.call('ZREM', expiry, k)
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- Keys that expired leave the ledger here, a few per call: no sweeper needed.
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, 32)) do
  if redis.call('EXISTS', gone) == 0 then
    forget(gone)
  else
    redis.call('ZREM', expiry, gone)
  end
end

local size = tonumber(redis.call('HGET', ledger, key) or '0')
if size ~= 0 and redis.call('EXISTS', key) == 0 then
  forget(key)
  size = 0
end
local total = tonumber(redis.call('HGET', ledger, TOTAL) or '0')

local function fits(new_size)
  return new_size <= size or total - size + new_size <= quota
end

local function record(new_size)
  redis.call('HSET', ledger, key, new_size)
  redis.call('HINCRBY', ledger, TOTAL, new_size - size)
end

if op == 'set' then
  local value, ttl = ARGV[3], tonumber(ARGV[4])
  local new_size = #key + #value
  if not fits(new_size) then return { 0 } end
  if ttl > 0 then
    redis.call('SET', key, value, 'PX', ttl)
    redis.call('ZADD', expiry, now + ttl, key)
  else
    redis.call('SET', key, value)
    redis.call('ZREM', expiry, key)
  end
  record(new_size)
  return { 1 }
elseif op == 'delete' then
  local removed = redis.call('DEL', key)
  forget(key)
  return { 1, removed }
elseif op == 'incr' then
  local new_size = size
  if size == 0 then new_size = #key + 20 end
  if not fits(new_size) then return { 0 } end
  local value = redis.call('INCRBY', key, ARGV[3])
  record(new_size)
  return { 1, value }
elseif op == 'set-add' then
  local cap = tonumber(ARGV[3])
  local new, growth = {}, 0
  for i = 4, #ARGV do
    if redis.call('SISMEMBER', key, ARGV[i]) == 0 then
      new[#new + 1] = ARGV[i]
      growth = growth + #ARGV[i]
    end
  end
  if #new == 0 then return { 1 } end
  if redis.call('SCARD', key) + #new > cap then return { -1 } end
  local base = size
  if base == 0 then base = #key end
  if not fits(base + growth) then return { 0 } end
  local added, grown = { 1 }, 0
  for _, member in ipairs(new) do
    if redis.call('SADD', key, member) == 1 then
      added[#added + 1] = member
      grown = grown + #member
    end
  end
  record(base + grown)
  return added
elseif op == 'set-remove' then
  local removed, shrunk = 0, 0
  for i = 3, #ARGV do
    if redis.call('SREM', key, ARGV[i]) == 1 then
      removed = removed + 1
      shrunk = shrunk + #ARGV[i]
    end
  end
  if redis.call('EXISTS', key) == 0 then
    forget(key)
  elseif size ~= 0 then
    record(math.max(size - shrunk, #key))
  end
  return { 1, removed }
end
return redis.error_reply('unknown kv operation ' .. tostring(op))
