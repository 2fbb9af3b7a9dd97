-- Token buckets in KEYS[1..n] (hashes: tokens, ts), all or none: the tokens
-- are taken from each only when every bucket has them (a call needs room in
-- all of its quotas; taking from one and then failing on another would spend
-- quota for nothing). One bucket is the plain rate limit.
-- Time comes from the Redis server, so every host instance sees the same clock.
-- ARGV: tokens wanted, then per bucket: capacity, refill per millisecond.
-- Returns {allowed (0/1), whole tokens left (the fewest of any bucket),
-- ms until all have enough (-1: never)}.
local wanted = tonumber(ARGV[1])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local buckets = {}
local all = true
for i, key in ipairs(KEYS) do
  local capacity = tonumber(ARGV[2 * i])
  local rate = tonumber(ARGV[2 * i + 1])
  local state = redis.call('HMGET', key, 'tokens', 'ts')
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
  if tokens < wanted then all = false end
  buckets[i] = {key = key, capacity = capacity, rate = rate, tokens = tokens, ts = ts}
end

local retry = 0
local fewest = nil
for _, b in ipairs(buckets) do
  if all then
    b.tokens = b.tokens - wanted
  elseif b.tokens < wanted then
    if b.rate > 0 then
      if retry >= 0 then retry = math.max(retry, math.ceil((wanted - b.tokens) / b.rate)) end
    else
      retry = -1
    end
  end
  if fewest == nil or b.tokens < fewest then fewest = b.tokens end
  redis.call('HSET', b.key, 'tokens', string.format('%.17g', b.tokens), 'ts', b.ts)
  if b.rate > 0 then
    redis.call('PEXPIRE', b.key, math.ceil((b.capacity - b.tokens) / b.rate) + 1000)
  else
    redis.call('PEXPIRE', b.key, 86400000)
  end
end

local allowed = 0
if all then allowed = 1 end
return {allowed, math.floor(fewest or 0), retry}
