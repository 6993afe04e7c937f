#!/usr/bin/env bash
# Group-buying joins (POST /api/deals/{id}/join) against single orders on the same server, in
# the same run, with wrk on the same machine.
# Usage: [BIN=path] [GROUP=3] [DEALS=40000] [SCALED=1 | TARGET=url] scripts/bench/deals.sh [duration=15s] [connections=64]
#   GROUP: members per deal (2..1000); DEALS: deals opened before the load (their slots, DEALS ×
#   GROUP, must outnumber the joins of the run, or the last joins are 409 deal_full).
#   SCALED=1: one `ordermill api` and one `ordermill worker` on PostgreSQL, RabbitMQ and Redis
#   (scripts/bench/scaled-nodes.sh, as scaled.sh starts them) instead of a fresh `ordermill
#   serve` on a temporary data dir; TARGET: an api node already running (ORDERMILL_MERCHANT_TOKEN
#   its merchant token).
# Needs: a release build, wrk, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-15s}
conns=${2:-64}
bin=${BIN:-target/release/ordermill}
group=${GROUP:-3}
deals=${DEALS:-40000}
data=$(mktemp -d)
ids=$(mktemp)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$data" "$ids"' EXIT
target=${TARGET:-}
if [ -n "${SCALED:-}" ]; then
  # shellcheck source=scripts/bench/scaled-nodes.sh
  . scripts/bench/scaled-nodes.sh
  trap 'cleanup; rm -rf "$data" "$ids"' EXIT
  start_nodes 1 1
  target=http://127.0.0.1:18090
fi
export ORDERMILL_MERCHANT_TOKEN=${ORDERMILL_MERCHANT_TOKEN:-bench-merchant-$$}
if [ -z "$target" ]; then
  ORDERMILL_LOG_FILTER=warn "$bin" serve --listen 127.0.0.1:18080 --data-dir "$data" >/dev/null 2>&1 &
  target=http://127.0.0.1:18080
  for _ in $(seq 100); do curl -sf -o /dev/null "$target/readyz" && break; sleep 0.1; done
fi
sku=bench-deal-$$
curl -sf -X PUT -H "Authorization: Bearer $ORDERMILL_MERCHANT_TOKEN" "$target/api/products/$sku" \
  -d '{"name":"Bench deal","price":"19.99","stock":100000000}' >/dev/null
curl -sf -X PUT -H "Authorization: Bearer $ORDERMILL_MERCHANT_TOKEN" "$target/api/products/bench-hot" \
  -d '{"name":"Bench","price":"19.99","stock":1000000000}' >/dev/null

echo "== opening $deals deals of $group members on $sku =="
python3 - "$target" "$sku" "$group" "$deals" "$ids" <<'PY'
import http.client, json, os, sys, time, urllib.parse
target, sku, group, deals, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
url = urllib.parse.urlsplit(target)
conn = http.client.HTTPConnection(url.hostname, url.port)
headers = {"Authorization": "Bearer " + os.environ["ORDERMILL_MERCHANT_TOKEN"], "Content-Type": "application/json"}
body = json.dumps({"sku": sku, "deal_price": "9.90", "group_size": group, "expires_in": "1h"})
started = time.time()
with open(out, "w") as f:
    for i in range(deals):
        conn.request("POST", "/api/deals", body, headers)
        reply = conn.getresponse()
        answer = reply.read()
        if reply.status != 201:
            sys.exit(f"opening a deal answered {reply.status}: {answer[:200]!r}")
        f.write(json.loads(answer)["deal_id"] + "\n")
print(f"opened {deals} deals in {time.time() - started:.1f} s")
PY

run() { wrk -t1 -c"$conns" -d"$duration" --latency "$@"; }
echo "== single orders (scripts/bench/order.lua), the same run's reference =="
orders=$(run -s scripts/bench/order.lua "$target" | tee /dev/stderr | awk '/Requests\/sec/ {print $2}')
echo "== deal joins (scripts/bench/deals.lua), a new customer each =="
joins=$(DEAL_IDS=$ids GROUP=$group run -s scripts/bench/deals.lua "$target" | tee /dev/stderr | awk '/Requests\/sec/ {print $2}')
echo
echo "orders  req/s: $orders"
echo "joins   req/s: $joins"
awk -v a="$joins" -v b="$orders" 'BEGIN { printf "ratio joins/orders: %.2f\n", a / b }'
python3 - "$target" "$ids" <<'PY'
import http.client, json, sys, urllib.parse
target, ids = sys.argv[1], sys.argv[2]
url = urllib.parse.urlsplit(target)
conn = http.client.HTTPConnection(url.hostname, url.port)
counts = {}
for deal in open(ids).read().split()[:5000]:
    conn.request("GET", "/api/deals/" + deal)
    status = json.loads(conn.getresponse().read()).get("status", "?")
    counts[status] = counts.get(status, 0) + 1
print("first 5,000 deals by status:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
PY
if [ -n "${SCALED:-}" ]; then
  echo "joins per transaction (sum, count) and their seconds (sum):"
  curl -s "$target/metrics" | grep -E '^ordermill_deal_join_transaction_(joins|seconds)_(sum|count)' || echo "  (not reported by this build)"
fi
