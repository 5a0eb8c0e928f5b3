-- wrk: replay the bearer tokens in the file named by BENCH_TOKENS, one per request, in turn.
-- Each request is formatted once, up front: formatting one per request (a new ~1 KB string each
-- time) made wrk, not the server, set the pace, and a server that waits for work spends more CPU
-- per request than a busy one (fewer requests per wake-up).
local requests = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  if #line > 0 then
    requests[#requests + 1] = wrk.format("GET", nil, { Authorization = "Bearer " .. line })
  end
end
local i = math.random(#requests)
request = function()
  i = i % #requests + 1
  return requests[i]
end
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
