-- GCRA (the generic cell rate algorithm, as redis-cell and Envoy's rate limit service use): one
-- key per limited thing holds its theoretical arrival time (TAT) in microseconds.
-- KEYS[1] the TAT; ARGV[1] now in µs or '' for the server's clock, ARGV[2] emission interval
-- in µs (period / rate), ARGV[3] burst (requests allowed at once from rest).
-- Returns {1, 0} allowed, or {0, µs until the next request would be}.
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local interval = tonumber(ARGV[2])
local tolerance = interval * tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > tolerance then
  return {0, math.ceil(ahead - tolerance)}
end
-- string.format: a bare number would reach Redis as %.14g and lose microseconds.
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(ahead / 1000) + 1)
return {1, 0}
