#!/usr/bin/env bash
# What verifying customer JWTs costs `ordermill serve`, by algorithm, against `open` mode in
# the same run: each mode on a fresh `serve`, the same closed loop (the flash-sale mix of the
# other embedded benches), the server's CPU time per accepted order read from /proc over the
# load. Keys are made for the run with openssl (RSA 2048, P-256, Ed25519).
#   ORDERS_PER_CUSTOMER=1 (the default): every order a new customer with a new token, verified
#   in full; 10: nine orders in ten reuse their customer's token, which a node remembers.
# The load generator signs each customer's token itself, on the same cores: RS256 signing
# (~0.65 ms) holds a closed loop back at 1 order per customer, and a node's CPU per order
# grows as its rate falls (smaller group commits), so compare modes at one open-loop RATE
# (orders/s) that every mode's signing keeps up with, e.g. RATE=1000.
# Usage: [BIN=path] [BENCH_BIN=path] [ORDERS_PER_CUSTOMER=N] [RATE=N] [MODES="open HS256 ..."]
#        scripts/bench/jwt.sh [duration=10s] [connections=64]
# BENCH_BIN: the load generator's build (default BIN), so an older `serve` can be measured.
# Needs: a release build (cargo build --release), openssl, python3, curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-10s}
conns=${2:-64}
bin=${BIN:-target/release/ordermill}
bench_bin=${BENCH_BIN:-$bin}
per_customer=${ORDERS_PER_CUSTOMER:-1}
pace=()
if [ -n "${RATE:-}" ]; then pace=(--rate "$RATE"); fi
modes=${MODES:-open HS256 EdDSA ES256 RS256}
port=18085
export ORDERMILL_MERCHANT_TOKEN=${ORDERMILL_MERCHANT_TOKEN:-bench-merchant-$$}
keys=$(mktemp -d)
data=""
server=""
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$keys"; [ -n "$data" ] && rm -rf "$data"' EXIT

secret="bench-jwt-secret-$$-of-at-least-32-bytes"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$keys/RS256.key" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$keys/ES256.key" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$keys/EdDSA.key" 2>/dev/null
for alg in RS256 ES256 EdDSA; do openssl pkey -in "$keys/$alg.key" -pubout -out "$keys/$alg.pub"; done

# serve MODE: a fresh node whose customers are `open` or prove themselves with MODE's JWTs.
serve() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; fi
  [ -n "$data" ] && rm -rf "$data"
  data=$(mktemp -d)
  local env=()
  case $1 in
    open) ;;
    HS256) env=(ORDERMILL_AUTH__CUSTOMER=jwt ORDERMILL_AUTH__JWT__SECRET="$secret") ;;
    *) env=(ORDERMILL_AUTH__CUSTOMER=jwt ORDERMILL_AUTH__JWT__ALGORITHM="$1"
            ORDERMILL_AUTH__JWT__PUBLIC_KEY_FILE="$keys/$1.pub") ;;
  esac
  env "${env[@]}" RUST_LOG=warn "$bin" serve --listen 127.0.0.1:$port --data-dir "$data" \
    >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:$port/readyz && return; sleep 0.1; done
  echo "ordermill serve ($1) did not become ready on 127.0.0.1:$port" >&2
  exit 1
}

# load MODE JSON_OUT [bench run options...]
load() {
  local mode=$1 out=$2
  shift 2
  local signing=()
  case $mode in
    open) ;;
    HS256) signing=(--jwt-secret "$secret") ;;
    *) signing=(--jwt-key "$keys/$mode.key" --jwt-algorithm "$mode") ;;
  esac
  "$bench_bin" bench run --target http://127.0.0.1:$port --connections "$conns" \
    --skus 1000 --hot-skus 10 --hot-share 0.8 --orders-per-customer "$per_customer" --quiet \
    --json "$out" "${signing[@]}" "$@" >/dev/null
}

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
results=$(mktemp)
loop="closed loop"
if [ -n "${RATE:-}" ]; then loop="open loop at $RATE orders/s"; fi
echo "== $duration $loop, $conns connections, $per_customer order(s) per customer and token =="
for mode in $modes; do
  serve "$mode"
  load "$mode" /tmp/om-jwt-setup.json --setup --duration 300ms
  before=$(cpu)
  load "$mode" "/tmp/om-jwt-$mode.json" --duration "$duration" "${pace[@]}"
  after=$(cpu)
  echo "$mode $before $after" >>"$results"
done

python3 - "$results" "$ticks" <<'PY'
import json, sys
rows = [line.split() for line in open(sys.argv[1])]
ticks = int(sys.argv[2])
base = None
print(f"{'customers':10} {'orders/s':>9} {'accepted':>9} {'refused':>8} {'serve CPU/order':>16} {'vs open':>8}")
for mode, before, after in rows:
    run = json.load(open(f"/tmp/om-jwt-{mode}.json"))["run"]
    created = run["responses"]["201"]
    refused = run["responses"]["4xx"] + run["responses"]["5xx"]
    us = (int(after) - int(before)) / ticks / max(created, 1) * 1e6
    if mode == "open":
        base = us
    ratio = f"{us / base:.2f}x" if base else "-"
    print(f"{mode:10} {run['throughput']['orders_per_sec']:9.0f} {created:9} {refused:8} "
          f"{us:13.1f} us {ratio:>8}")
PY
rm -f "$results"
