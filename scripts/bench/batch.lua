-- wrk script: POST /api/orders/batch with 1000 single-item orders per request.
-- Usage: wrk -t1 -c8 -d20s -s scripts/bench/batch.lua http://127.0.0.1:8080
-- Orders/s = requests/s × 1000. The SKU must exist with enough stock (scripts/bench/intake.sh).
wrk.method = "POST"
wrk.path = "/api/orders/batch"
wrk.headers["Content-Type"] = "application/json"
local orders = {}
for i = 1, 1000 do
  orders[i] = string.format('{"customer_id":"bench-%d","items":[{"sku":"bench-hot","quantity":1}]}', i)
end
wrk.body = '{"orders":[' .. table.concat(orders, ",") .. ']}'
