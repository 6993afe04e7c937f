-- wrk script: POST one single-item order per request, keep-alive.
-- Usage: wrk -t1 -c64 -d20s -s scripts/bench/order.lua http://127.0.0.1:8080
-- The SKU must exist with enough stock (see scripts/bench/intake.sh, which sets it up).
wrk.method = "POST"
wrk.path = "/api/orders"
wrk.headers["Content-Type"] = "application/json"
-- SKU=bench-gone (stock 0) measures the sold-out answer instead.
local sku = os.getenv("SKU") or "bench-hot"
wrk.body = '{"customer_id":"bench-1","items":[{"sku":"' .. sku .. '","quantity":1}]}'

-- No response() callback: calling into Lua per response would make wrk the bottleneck.
done = function(summary, latency, requests)
  io.write(string.format("non-2xx/3xx: %d, socket errors: connect %d read %d write %d timeout %d\n",
    summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
end
