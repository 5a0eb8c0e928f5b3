-- GCRA (the generic cell rate algorithm, as redis-cell and Envoy's rate limit service use): one
-- key per limited thing holds its theoretical arrival time (TAT) in microseconds.
-- KEYS[1] the TAT; ARGV[1] now in µs or '' for the server's clock, ARGV[2] emission interval
-- in µs (period / rate), ARGV[3] burst (requests allowed at once from rest), ARGV[4] requests a
-- replica already admitted on its own allowance (charged whatever the state: they were served),
-- ARGV[5] '1' to ask for one more request, '0' to only charge.
-- Returns {allowed (1, or 0 when refused or not asked), µs until the next request would be
-- allowed (0 when allowed), whole requests still allowed at once afterwards}.
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local interval = tonumber(ARGV[2])
local tolerance = interval * tonumber(ARGV[3])
local charged = tonumber(ARGV[4]) or 0
local ask = ARGV[5] ~= '0'
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
tat = tat + charged * interval
local allowed = 0
local retry = 0
if ask then
  local ahead = tat + interval - now
  if ahead > tolerance then
    retry = math.ceil(ahead - tolerance)
  else
    tat = tat + interval
    allowed = 1
  end
end
local ahead = tat - now
if charged > 0 or allowed == 1 then
  -- string.format: a bare number would reach Redis as %.14g and lose microseconds.
  redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(ahead / 1000) + 1)
end
local headroom = math.floor((tolerance - ahead) / interval)
if headroom < 0 then headroom = 0 end
return {allowed, retry, headroom}
