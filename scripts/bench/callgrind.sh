#!/usr/bin/env bash
# Instructions per order of `ordermill serve`, by thread and function, under valgrind's
# callgrind: a count that does not move with the VM's speed or what else runs on it, so two
# builds compare to the percent where wall-clock runs on a noisy VM need many pairs.
#
# A fresh `serve` runs under callgrind with collection off; after a warm-up, collection is
# switched on for a closed-loop load on one hot SKU and stays on until every order of the
# window is confirmed (the consumers' work counts too), then the counts are dumped.
# Under valgrind the server runs ~50x slower, so its group commits are smaller than at full
# speed (~4 orders each, against 30-100): per-commit costs weigh more than they would there.
#
# Usage: scripts/bench/callgrind.sh [BIN=target/release/ordermill] [seconds=40] [connections=8]
# Prints instructions per order for the writer thread, the runtime's worker threads and the
# rest, then the ordermill functions costing most per order (inclusive). The raw profiles stay
# in $OUT (default /tmp/ordermill-callgrind) for `callgrind_annotate --inclusive=yes FILE`.
# Needs: valgrind, curl; a release build (its debug line tables name the functions).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/ordermill}
seconds=${2:-40}
conns=${3:-8}
out=${OUT:-/tmp/ordermill-callgrind}
port=18190
export ORDERMILL_MERCHANT_TOKEN=${ORDERMILL_MERCHANT_TOKEN:-bench-merchant-$$}
command -v callgrind_control >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out"
data=$(mktemp -d)
vg=""
trap '[ -n "$vg" ] && kill "$vg" 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT

valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
  --callgrind-out-file="$out/callgrind.%p" \
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" >"$out/serve.log" 2>&1 &
vg=$!
for _ in $(seq 1 600); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 0.5; done
curl -sf "localhost:$port/readyz" >/dev/null || { echo "serve did not start under valgrind; see $out/serve.log" >&2; exit 1; }
echo "warming up (collection off)..."
"$bin" bench run --target "http://127.0.0.1:$port" --setup --skus 1 --hot-skus 1 \
  --connections 4 --duration 5s >/dev/null

counter() { curl -s "localhost:$port/metrics" | awk -v name="$1" '$1 ~ "^"name {s += $2} END {print s + 0}'; }
accepted0=$(counter ordermill_orders_accepted_total)
confirmed0=$(counter ordermill_orders_confirmed_total)
callgrind_control -i on "$vg" >/dev/null
echo "loading for ${seconds}s over $conns connections (collection on)..."
"$bin" bench run --target "http://127.0.0.1:$port" --skus 1 --hot-skus 1 \
  --connections "$conns" --duration "${seconds}s" >"$out/bench.txt" 2>&1
for _ in $(seq 1 300); do
  accepted=$(counter ordermill_orders_accepted_total)
  confirmed=$(counter ordermill_orders_confirmed_total)
  [ $((accepted - accepted0)) -le $((confirmed - confirmed0)) ] && break
  sleep 1
done
callgrind_control -i off "$vg" >/dev/null
orders=$(( $(counter ordermill_orders_accepted_total) - accepted0 ))
confirmed=$(( $(counter ordermill_orders_confirmed_total) - confirmed0 ))
callgrind_control -d "$vg" >/dev/null
kill "$vg"; wait "$vg" 2>/dev/null || true
vg=""

echo "orders in the window: $orders accepted, $confirmed confirmed"
[ "$orders" -gt 0 ] || { echo "no orders were accepted; see $out/bench.txt" >&2; exit 1; }
total=0; writer=0; workers=0; writer_files=(); worker_files=()
for file in "$out"/callgrind.*-*; do
  ir=$(awk '/^totals:/ {print $2; exit}' "$file")
  [ -n "$ir" ] && [ "$ir" -gt 0 ] || continue
  total=$((total + ir))
  if grep -q 'sqlite::writer::run' "$file"; then
    writer=$((writer + ir)); writer_files+=("$file")
  elif grep -q 'scheduler::multi_thread::worker::run' "$file"; then
    workers=$((workers + ir)); worker_files+=("$file")
  fi
done
printf '%-34s %12s\n' "instructions per order" ""
printf '  %-32s %12d\n' "sqlite writer thread" $((writer / orders)) \
  "runtime worker threads" $((workers / orders)) \
  "other threads" $(((total - writer - workers) / orders)) \
  "all" $((total / orders))
top() {
  callgrind_annotate --inclusive=yes "$@" 2>/dev/null \
    | awk -v n="$orders" '/^ *[0-9,]+ \(/ && /crates\/(core|store|server|bus|cache)\/src\// && !/=>/ {
        ir = $1; gsub(",", "", ir); fn = $0
        sub(/^ *[0-9,]+ \([ 0-9.]+%\) +/, "", fn); sub(/ \[[^]]*\]$/, "", fn); sub(/^[^:]*\.rs:/, "", fn)
        if (!seen[fn]++ && shown++ < 12) printf "  %10d  %s\n", ir / n, substr(fn, 1, 110) }'
}
if [ ${#worker_files[@]} -gt 0 ]; then
  echo "runtime worker threads, per order, inclusive (ordermill's functions):"
  top "${worker_files[@]}"
fi
if [ ${#writer_files[@]} -gt 0 ]; then
  echo "sqlite writer thread, per order, inclusive (ordermill's functions):"
  top "${writer_files[@]}"
fi
echo "profiles: $out (callgrind_annotate --inclusive=yes FILE)"
