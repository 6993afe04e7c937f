#!/usr/bin/env bash
# Issue 13's three embedded figures in one run, each on a fresh `ordermill serve`:
#   1. sustained: closed loop (64 connections) against the bare ceiling of the same run;
#   2. orders at half that rate, open loop (latency from each request's intended send time),
#      and the share the server itself answered within 5 ms (its intake histogram);
#   3. sold-out answers at the same half rate (every SKU at stock 0, every answer 409).
# The load is the flash-sale mix of the other embedded benches: 1,000 SKUs, 80% of orders on 10.
# Usage: [BIN=path] [HALF_RATE=orders/s] scripts/bench/half-load.sh [duration=10s] [connections=64]
# Needs: a release build (cargo build --release), python3, curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-10s}
conns=${2:-64}
bin=${BIN:-target/release/ordermill}
port=18083
ref=18084
export ORDERMILL_MERCHANT_TOKEN=${ORDERMILL_MERCHANT_TOKEN:-bench-merchant-$$}
data=""
server=""
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; [ -n "$data" ] && rm -rf "$data"' EXIT

# field FILE KEY...: a value of a `bench run --json` report.
field() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
for k in sys.argv[2:]: d = d[k]
print(d)' "$@"; }

fresh_server() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; fi
  [ -n "$data" ] && rm -rf "$data"
  data=$(mktemp -d)
  RUST_LOG=warn "$bin" serve --listen 127.0.0.1:$port --data-dir "$data" >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:$port/readyz && return; sleep 0.1; done
  echo "ordermill serve did not become ready on 127.0.0.1:$port" >&2
  exit 1
}

load() { # load JSON_OUT [bench run options...]
  local out=$1
  shift
  "$bin" bench run --target http://127.0.0.1:$port --connections "$conns" --duration "$duration" \
    --setup --skus 1000 --hot-skus 10 --hot-share 0.8 --quiet --json "$out" "$@" >/dev/null
}

"$bin" bench ceiling --listen 127.0.0.1:$ref >/dev/null 2>&1 &
for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:$ref/ && break; sleep 0.1; done

echo "== 1/3 sustained: closed loop, $conns connections, $duration, against the bare ceiling =="
fresh_server
# --e2e follows a sample of the orders until they are final, so the consumers have drained the
# backlog before the ceiling's run: the reference does not share the cores with that work.
load /tmp/om-half-sustained.json --reference http://127.0.0.1:$ref --e2e
sustained=$(field /tmp/om-half-sustained.json run throughput orders_per_sec)
ceiling=$(field /tmp/om-half-sustained.json reference run throughput orders_per_sec)
# HALF_RATE fixes the open-loop rate instead, so that two builds compared run the same load.
half=${HALF_RATE:-$(python3 -c "print(max(1, int($sustained / 2)))")}

echo "== 2/3 orders at half that rate: open loop at $half orders/s =="
fresh_server
load /tmp/om-half-orders.json --rate "$half"
# The server's own view of the same orders (arrival to durable answer, its histogram): what the
# client's tail adds on top is time in the load generator and the two processes sharing cores.
curl -sf 127.0.0.1:$port/metrics >/tmp/om-half-orders.metrics || : >/tmp/om-half-orders.metrics

echo "== 3/3 sold-out answers at $half requests/s (stock 0) =="
fresh_server
load /tmp/om-half-soldout.json --rate "$half" --stock 0

python3 - "$sustained" "$ceiling" <<'PY'
import json, sys
sustained, ceiling = map(float, sys.argv[1:])
orders = json.load(open("/tmp/om-half-orders.json"))["run"]
sold = json.load(open("/tmp/om-half-soldout.json"))["run"]
o, s = orders["accepted_latency_ms"], sold["latency_ms"]
print(f"sustained                {sustained:.0f} orders/s; ceiling {ceiling:.0f} req/s; "
      f"ratio {sustained / ceiling:.3f} (issue 13: >= 0.5)")
print(f"orders at half load      {orders['responses']['201']} accepted at "
      f"{orders['throughput']['orders_per_sec']:.0f}/s: p50 {o['p50']:.2f} ms  p99 {o['p99']:.2f} ms  "
      f"p99.9 {o['p99_9']:.2f} ms (issue 13: p99 <= 5 ms)")
buckets = {}
for line in open("/tmp/om-half-orders.metrics"):
    if line.startswith("ordermill_intake_duration_seconds_bucket{le="):
        le = line.split('"')[1]
        buckets[le] = float(line.rsplit(" ", 1)[1])
if buckets.get("+Inf"):
    within = 100.0 * buckets.get("0.005", 0.0) / buckets["+Inf"]
    print(f"  server-side            {within:.2f}% of them answered within 5 ms of arriving "
          f"(ordermill_intake_duration_seconds)")
print(f"sold out at half load    {sold['responses']['409']} answered 409: p50 {s['p50']:.2f} ms  "
      f"p99 {s['p99']:.2f} ms  p99.9 {s['p99_9']:.2f} ms (issue 13: p99 <= 2 ms)")
other = sold["requests"] - sold["responses"]["409"]
if other:
    print(f"warning: {other} sold-out requests were not answered 409")
PY
