-- wrk: replay the bearer tokens in the file named by BENCH_TOKENS, one per request, in turn.
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  if #line > 0 then tokens[#tokens + 1] = line end
end
local i = math.random(#tokens)
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", nil, { Authorization = "Bearer " .. tokens[i] })
end
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
