#!/usr/bin/env bash
# Single-order intake vs the ceiling, in the same run, with wrk on the same machine.
# Usage: scripts/bench/intake.sh [duration=20s] [connections=64]
# Needs: a release build (cargo build --release; BIN=path picks another binary) and wrk
# (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-20s}
conns=${2:-64}
bin=${BIN:-target/release/ordermill}
data=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT

"$bin" bench ceiling --listen 127.0.0.1:18081 >/dev/null 2>&1 &
export ORDERMILL_MERCHANT_TOKEN=${ORDERMILL_MERCHANT_TOKEN:-bench-merchant-$$}
RUST_LOG=warn "$bin" serve --listen 127.0.0.1:18080 --data-dir "$data" >/dev/null 2>&1 &
# The ceiling answers anything once it listens; ordermill's port answers from the start, and
# /readyz 200 once the node can take orders.
for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:18081/ && break; sleep 0.1; done
for _ in $(seq 50); do curl -sf -o /dev/null 127.0.0.1:18080/readyz && break; sleep 0.1; done
curl -sf -X PUT -H "Authorization: Bearer $ORDERMILL_MERCHANT_TOKEN" 127.0.0.1:18080/api/products/bench-hot \
  -d '{"name":"Bench","price":"19.99","stock":1000000000}' >/dev/null
curl -sf -X PUT -H "Authorization: Bearer $ORDERMILL_MERCHANT_TOKEN" 127.0.0.1:18080/api/products/bench-gone \
  -d '{"name":"Sold out","price":"19.99","stock":0}' >/dev/null

run() { wrk -t1 -c"$conns" -d"$duration" --latency -s scripts/bench/order.lua "$1" ; }
echo "== ceiling (bare axum, parse + 201) =="; ceiling=$(run http://127.0.0.1:18081 | tee /dev/stderr | awk '/Requests\/sec/ {print $2}')
echo "== ordermill serve (validate, price, reserve, group commit + fsync) =="; om=$(run http://127.0.0.1:18080 | tee /dev/stderr | awk '/Requests\/sec/ {print $2}')
echo "== ordermill, sold-out hot SKU (every answer is 409 out_of_stock) =="
SKU=bench-gone wrk -t1 -c"$conns" -d"$duration" --latency -s scripts/bench/order.lua http://127.0.0.1:18080 | grep -E 'Latency|50%|99%|Requests/sec|non-2xx'
echo "== ordermill, batch intake (1000 orders per request, 4 connections) =="
batch=$(wrk -t1 -c4 -d"$duration" --latency -s scripts/bench/batch.lua http://127.0.0.1:18080 | tee /dev/stderr | awk '/Requests\/sec/ {print $2}')
echo
echo "batch orders/s: $(awk -v r="$batch" 'BEGIN { printf "%.0f", r * 1000 }')"
echo "ceiling   req/s: $ceiling"
echo "ordermill req/s: $om"
awk -v a="$om" -v b="$ceiling" 'BEGIN { printf "ratio ordermill/ceiling: %.2f\n", a / b }'
curl -s 127.0.0.1:18080/metrics | grep -E '^ordermill_commit_batch_orders_(sum|count)' \
  | awk '{v[$1]=$2} END { printf "mean commit batch: %.1f orders\n", v["ordermill_commit_batch_orders_sum"] / v["ordermill_commit_batch_orders_count"] }'
