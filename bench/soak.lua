-- wrk, for bench/soak.sh: checks every 200 answer's Expiration against the clock, counting tokens
-- served with less than BENCH_MIN_REMAINING seconds of validity left (there must be none).
local min_remaining = tonumber(os.getenv("BENCH_MIN_REMAINING") or "30")
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

init = function()
  checked, short, unreadable, least = 0, 0, 0, 1e9
end

-- Seconds since 1970 of a UTC civil date (Howard Hinnant's days_from_civil).
local function epoch(y, m, d, H, M, S)
  y = (m <= 2) and (y - 1) or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return (era * 146097 + doe - 719468) * 86400 + H * 3600 + M * 60 + S
end

response = function(status, headers, body)
  if status ~= 200 then return end
  checked = checked + 1
  local y, m, d, H, M, S = body:match('"Expiration":"(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)Z"')
  if not y then
    unreadable = unreadable + 1
    return
  end
  local left = epoch(tonumber(y), tonumber(m), tonumber(d), tonumber(H), tonumber(M), tonumber(S)) - os.time()
  if left < least then least = left end
  if left < min_remaining then short = short + 1 end
end

done = function(summary, latency, requests)
  local c, s, u, l = 0, 0, 0, 1e9
  for _, t in ipairs(threads) do
    c = c + t:get("checked")
    s = s + t:get("short")
    u = u + t:get("unreadable")
    l = math.min(l, t:get("least"))
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"socket_errors":%d,"non_2xx":%d,"p50_us":%d,"p99_us":%d,"checked":%d,"short":%d,"unreadable":%d,"least_left_s":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), c, s, u, l))
end
