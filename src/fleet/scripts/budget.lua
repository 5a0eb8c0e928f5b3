-- The fleet-wide STS budget, the same rules as src/sts/budget.rs: a sliding window of
-- ARGV[4] ms holds at most ARGV[2] calls; the caller lane may use the window minus a reserve of
-- a fifth of the budget (times the throttling factor); a throttled account makes each call
-- cost `factor` slots (at most 4) until the penalty ends.
-- KEYS (one hash slot): [1] every slot (zset member -> grant time ms), [2] the caller lane's
-- slots, [3] the penalty hash {factor, until}.
-- ARGV: [1] now in ms or '' for the server's clock, [2] calls per second, [3] 'caller' or
-- 'service', [4] window ms, [5] a member id unique to this request, [6] 'throttled' to record a
-- Throttling answer instead of asking, [7] penalty ms.
-- Returns {1, 0} granted, or {0, ms until the lane may have room}.
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local per = tonumber(ARGV[2])
local caller = ARGV[3] == 'caller'
local window = tonumber(ARGV[4])

local factor = 1
local penalty = redis.call('HMGET', KEYS[3], 'factor', 'until')
local penalty_until = tonumber(penalty[2])
if penalty_until and penalty_until > now then
  factor = tonumber(penalty[1]) or 1
end

if ARGV[6] == 'throttled' then
  factor = math.min(factor * 2, 4)
  local until_ms = now + tonumber(ARGV[7])
  redis.call('HSET', KEYS[3], 'factor', factor, 'until', until_ms)
  -- Relative, not PEXPIREAT: `now` may be a caller's clock rather than the server's.
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
  return {factor, 0}
end

-- A slot granted at `at` is free again once now - at >= window.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local caller_used = redis.call('ZCARD', KEYS[2])
local reserve = 0
if per >= 2 then reserve = math.ceil(per / 5) end
local cost = math.min(factor, per)
local caller_cap = per - reserve * factor

if used + cost <= per and ((not caller) or caller_used + cost <= caller_cap) then
  for i = 1, cost do
    local member = ARGV[5] .. ':' .. i
    redis.call('ZADD', KEYS[1], now, member)
    if caller then redis.call('ZADD', KEYS[2], now, member) end
  end
  redis.call('PEXPIRE', KEYS[1], window)
  if caller then redis.call('PEXPIRE', KEYS[2], window) end
  return {1, 0}
end

-- Refused: when the lane will have room if nothing else is granted meanwhile.
if caller and cost > caller_cap then
  -- Throttled so hard that the reserve is all there is: callers wait the penalty out.
  return {0, math.max((penalty_until or (now + window)) - now, 1)}
end
local at = now
if used + cost > per then
  local oldest = redis.call('ZRANGE', KEYS[1], used + cost - per - 1, used + cost - per - 1, 'WITHSCORES')
  if oldest[2] then at = math.max(at, tonumber(oldest[2]) + window) end
end
if caller and caller_used + cost > caller_cap then
  local must_expire = caller_used + cost - caller_cap
  local oldest = redis.call('ZRANGE', KEYS[2], must_expire - 1, must_expire - 1, 'WITHSCORES')
  if oldest[2] then at = math.max(at, tonumber(oldest[2]) + window) end
end
return {0, math.max(at - now, 1)}
