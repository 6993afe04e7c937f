#!/usr/bin/env bash
# Two builds of `ordermill serve` on the same closed-loop load, alternated, judged pair by pair:
# the embedded counterpart of scaled-ab.sh (same reasoning: on a shared VM a pair run a minute
# apart shares the box's speed more often than two averages do, so the median of the pairs'
# ratios is reported, and pairs alternate A B, B A, ... so neither build always goes first).
#
# Each run is a fresh `serve` on an empty data dir: a 3 s setup run (the catalog, warm-up), then
# the measured closed loop. The load is issue 10's and 13's: one hot SKU, one unit per order,
# distinct customers. It prints the run's orders/s, client p99 and `serve`'s CPU per order (user
# + system, from /proc, over the measured run only; the consumers' work in that window counts).
#
# Usage: scripts/bench/serve-ab.sh BIN_A BIN_B [pairs=3] [duration=15s] [connections=64]
#   LOAD_ARGS adds `bench run` options to both runs (e.g. LOAD_ARGS="--skus 1000 --hot-skus 10").
# Example: cp target/release/ordermill /tmp/ordermill-before; (change, rebuild);
#   scripts/bench/serve-ab.sh /tmp/ordermill-before target/release/ordermill 3 15s 64
# Needs: python3, curl; release builds.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/bench/ab-pairs.sh
. scripts/bench/ab-pairs.sh
ab_args 3 "$@"
load_args=${LOAD_ARGS:---skus 1 --hot-skus 1}
port=18185
export ORDERMILL_MERCHANT_TOKEN=${ORDERMILL_MERCHANT_TOKEN:-bench-merchant-$$}
ticks_per_sec=$(getconf CLK_TCK)
runs=$(mktemp)
report=$(mktemp)
data=""
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; fi
  [ -n "$data" ] && rm -rf "$data"
  rm -f "$runs" "$report"
}
trap cleanup EXIT

# cpu_ticks PID: user + system clock ticks the process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run LABEL BIN PAIR: one fresh server and one measured load; appends
# "LABEL PAIR orders/s p99_ms µs/order" to $runs and prints that line.
run() {
  local bin=$2 before after
  data=$(mktemp -d)
  RUST_LOG=warn "$bin" serve --listen 127.0.0.1:$port --data-dir "$data" >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:$port/readyz && break; sleep 0.1; done
  curl -sf -o /dev/null 127.0.0.1:$port/readyz || { echo "$bin serve did not become ready" >&2; exit 1; }
  # shellcheck disable=SC2086 # LOAD_ARGS is a list of options
  "$bin" bench run --target http://127.0.0.1:$port --connections "$conns" --duration 3s --setup \
    $load_args --quiet >/dev/null
  before=$(cpu_ticks "$server")
  # shellcheck disable=SC2086
  "$bin" bench run --target http://127.0.0.1:$port --connections "$conns" --duration "$duration" \
    $load_args --quiet --json "$report" >/dev/null
  after=$(cpu_ticks "$server")
  kill "$server"; wait "$server" 2>/dev/null || true
  server=""
  rm -rf "$data"
  data=""
  python3 - "$report" "$1" "$3" "$before" "$after" "$ticks_per_sec" <<'PY' | tee -a "$runs"
import json, sys
path, label, pair, before, after, hz = sys.argv[1:]
run = json.load(open(path))["run"]
created = run["orders"]["created"]
cpu_us = (int(after) - int(before)) / int(hz) * 1e6
print(f'{label} {pair} {run["throughput"]["orders_per_sec"]:.0f} '
      f'{run["latency_ms"]["p99"]:.2f} {cpu_us / max(created, 1):.1f}')
PY
}

echo "pair by pair: build pair orders/s p99_ms serve_µs_per_order"
ab_alternate run

echo "== B ÷ A, median over $pairs pairs (A = $bin_a, B = $bin_b) =="
python3 - "$runs" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, pair, *values = line.split()
    runs[(label, pair)] = [float(v) for v in values]
pairs = sorted({pair for _, pair in runs}, key=int)
for i, name in enumerate(["orders/s", "p99", "serve_us_per_order"]):
    ratios = [runs[("B", p)][i] / runs[("A", p)][i] for p in pairs
              if ("A", p) in runs and ("B", p) in runs and runs[("A", p)][i] > 0]
    if ratios:
        higher = sum(r > 1 for r in ratios)
        print(f"{name:<22} {statistics.median(ratios):6.3f}   (B higher in {higher} of {len(ratios)} pairs)")
PY
