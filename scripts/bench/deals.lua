-- wrk script: POST /api/deals/{id}/join, each join a new customer, keep-alive.
-- Usage: DEAL_IDS=file GROUP=3 wrk -t1 -c64 -d15s -s scripts/bench/deals.lua http://127.0.0.1:8080
-- DEAL_IDS names a file of open deals' ids, one per line, each taking GROUP members
-- (scripts/bench/deals.sh opens them). Deals are filled a window of 1,000 at a time, round robin:
-- one deal's joins are 1,000 requests apart (never racing each other for its last slot), and
-- every window's deals complete before the next window starts, so completions run all along.
local ids = {}
for line in io.lines(os.getenv("DEAL_IDS")) do
  ids[#ids + 1] = line
end
local group = tonumber(os.getenv("GROUP") or "3")
local window = math.min(1000, #ids)
local n = 0

request = function()
  local deal = (n % window) + window * math.floor(n / (window * group))
  n = n + 1
  local id = ids[(deal % #ids) + 1]
  return wrk.format("POST", "/api/deals/" .. id .. "/join",
    { ["Content-Type"] = "application/json" },
    '{"customer_id":"join-' .. n .. '"}')
end

done = function(summary, latency, requests)
  io.write(string.format("non-2xx/3xx: %d, socket errors: connect %d read %d write %d timeout %d\n",
    summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
end
