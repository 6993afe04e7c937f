#!/usr/bin/env bash
# What one confirmed order costs the embedded store in writes: bytes the `serve` process wrote
# to disk (WAL and checkpoints, from /proc/PID/io) and fsyncs, per order, over an open-loop run
# that is then left to drain until every order is confirmed; and the process's CPU time per order
# (user + system, from /proc/PID/stat), steadier than a throughput on a noisy machine.
# Usage: scripts/bench/writes.sh [orders/s=4000] [duration=10s]
# Needs: a release build (cargo build --release; BIN=path picks another binary), Linux /proc, curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
rate=${1:-4000}
duration=${2:-10s}
bin=${BIN:-target/release/ordermill}
data=$(mktemp -d)
port=18084
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
export ORDERMILL_MERCHANT_TOKEN=${ORDERMILL_MERCHANT_TOKEN:-bench-merchant-$$}
ORDERMILL_LOG_FILTER=warn "$bin" serve --listen 127.0.0.1:$port --data-dir "$data" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 50); do curl -sf -o /dev/null "127.0.0.1:$port/readyz" && break; sleep 0.1; done
metric() { curl -s 127.0.0.1:$port/metrics | awk -v m="$1" '$1 == m {s += $2} END {printf "%d", s}'; }
io() { awk -v k="$1:" '$1 == k {print $2}' /proc/$pid/io; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
"$bin" bench run --target http://127.0.0.1:$port --connections 64 --duration 1s --rate 500 \
  --setup --skus 1000 --hot-skus 10 --hot-share 0.8 >/dev/null
sleep 2 # the warm-up's orders confirmed
confirmed0=$(metric ordermill_orders_confirmed_total)
bytes0=$(io write_bytes); syscw0=$(io syscw); cpu0=$(cpu_ticks)
"$bin" bench run --target http://127.0.0.1:$port --connections 64 --duration "$duration" \
  --rate "$rate" --skus 1000 --hot-skus 10 --hot-share 0.8 | grep -E 'orders/s|p99|201'
# Drained when the confirmed count stops moving.
last=-1
for _ in $(seq 120); do
  now=$(metric ordermill_orders_confirmed_total)
  [ "$now" = "$last" ] && break
  last=$now; sleep 1
done
orders=$((last - confirmed0))
bytes=$(( $(io write_bytes) - bytes0 ))
echo "confirmed orders: $orders"
awk -v b="$bytes" -v n="$orders" 'BEGIN { printf "disk bytes written per confirmed order: %.0f (%.1f MiB in all)\n", b / n, b / 1048576 }'
awk -v s="$(( $(io syscw) - syscw0 ))" -v n="$orders" 'BEGIN { printf "write syscalls per confirmed order: %.2f\n", s / n }'
awk -v t="$(( $(cpu_ticks) - cpu0 ))" -v hz="$(getconf CLK_TCK)" -v n="$orders" \
  'BEGIN { printf "CPU per confirmed order (serve, user + system): %.1f us\n", t / hz * 1e6 / n }'
