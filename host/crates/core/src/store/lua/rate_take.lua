-- Token bucket in KEYS[1] (hash: tokens, ts).
-- ARGV: capacity, refill per millisecond, tokens wanted.
-- Returns {allowed (0/1), whole tokens left, ms until enough tokens (-1: never)}.
-- Time comes from the Redis server, so every host instance sees the same clock.
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate)
  ts = now
end

local allowed = 0
local retry = 0
if tokens >= wanted then
  tokens = tokens - wanted
  allowed = 1
elseif rate > 0 then
  retry = math.ceil((wanted - tokens) / rate)
else
  retry = -1
end

redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', ts)
if rate > 0 then
  redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate) + 1000)
else
  redis.call('PEXPIRE', KEYS[1], 86400000)
end
return {allowed, math.floor(tokens), retry}
