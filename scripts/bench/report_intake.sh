#!/usr/bin/env bash
# Intake latency with and without a large report running, in the same run (issue 16: while a
# 10⁶-order report runs, intake p99 stays within 1.5× of its value without it).
#
#   scripts/bench/report_intake.sh [orders=1000000] [rate=4000] [duration=20s] [format=csv]
#
# One release `ordermill serve`: fills it with `orders` orders (batches of 1000), waits until
# the consumers confirmed them all, then runs the same open-loop load (`rate` orders/s for
# `duration`) twice: alone, and with an `orders` report over every order running. Prints each
# run's accepted p50/p99, their ratio, and the report's rows and time.
# Needs: a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/../.."
orders=${1:-1000000}
rate=${2:-4000}
duration=${3:-20s}
format=${4:-csv}
bin=target/release/ordermill
port=18090
base=http://127.0.0.1:$port
data=$(mktemp -d)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$data" "$work"' EXIT
export ORDERMILL_MERCHANT_TOKEN=${ORDERMILL_MERCHANT_TOKEN:-bench-merchant-$$}

# A backlog of a million events is the point of the fill, not an overload.
ORDERMILL_MAX_BACKLOG=100000000 RUST_LOG=warn "$bin" serve --listen 127.0.0.1:$port --data-dir "$data" \
  >"$work/serve.log" 2>&1 &
for _ in $(seq 100); do curl -s -o /dev/null "$base/healthz" && break; sleep 0.1; done

# The bench's catalog (bench-0 ... bench-999) with stock for everything below.
"$bin" bench run --target "$base" --setup --merchant-token "$ORDERMILL_MERCHANT_TOKEN" --skus 1000 \
  --stock 1000000000 --duration 1s --connections 1 --quiet >/dev/null

echo "== filling with $orders orders =="
start_ms=$(( $(date +%s%3N) - 1000 ))
python3 - "$base" "$orders" <<'PY'
import http.client, json, sys, time
base, want = sys.argv[1], int(sys.argv[2])
host = base.split("//")[1]
conn = http.client.HTTPConnection(host, timeout=60)
done, n, t0 = 0, 0, time.time()
while done < want:
    size = min(1000, want - done)
    body = json.dumps({"orders": [{"customer_id": f"fill-{n}-{i}", "items": [{"sku": f"bench-{(n * 7 + i) % 1000}", "quantity": 1}]} for i in range(size)]})
    conn.request("POST", "/api/orders/batch", body, {"content-type": "application/json"})
    reply = conn.getresponse()
    data = json.loads(reply.read())
    n += 1
    if reply.status != 200:
        time.sleep(0.2)
        continue
    done += data["accepted"]
    if n % 100 == 0:
        print(f"  {done} accepted ({done / (time.time() - t0):.0f}/s)", flush=True)
print(f"  {done} accepted in {time.time() - t0:.0f} s", flush=True)
PY
end_ms=$(( $(date +%s%3N) + 1000 ))

metric() { curl -s "$base/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
echo "== waiting for the consumers to confirm them =="
while :; do
  accepted=$(metric ordermill_orders_accepted_total); confirmed=$(metric ordermill_orders_confirmed_total)
  [ "${confirmed%.*}" -ge "${accepted%.*}" ] && break
  echo "  confirmed $confirmed of $accepted"; sleep 5
done

echo "== waiting for every queue to drain =="
while :; do
  depth=$(curl -s "$base/metrics" | awk '$1 ~ /^ordermill_queue_depth/ {s += $2} END {print s + 0}')
  [ "${depth%.*}" -eq 0 ] && break
  echo "  $depth messages left"; sleep 5
done

load() { "$bin" bench run --target "$base" --skus 1000 --rate "$rate" --duration "$duration" --quiet --json "$1" >/dev/null; }
p() { python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['run']; l=s['accepted_latency_ms']; print(l['p50'], l['p99'], round(s['throughput']['orders_per_sec']))" "$1"; }

echo "== warming up (10 s, not counted) =="
"$bin" bench run --target "$base" --skus 1000 --rate "$rate" --duration 10s --quiet >/dev/null
echo "== intake alone: $rate orders/s for $duration =="
load "$work/alone.json"
echo "== intake with a report over all $orders orders running =="
asked=$(curl -s "$base/api/reports" -H "Authorization: Bearer $ORDERMILL_MERCHANT_TOKEN" \
  -d "{\"kind\": \"orders\", \"from\": $start_ms, \"to\": $end_ms, \"format\": \"$format\"}")
id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["report_id"])' "$asked")
t0=$(date +%s%3N)
load "$work/with.json"
during=$(curl -s "$base/api/reports/$id" -H "Authorization: Bearer $ORDERMILL_MERCHANT_TOKEN")
while :; do
  status=$(curl -s "$base/api/reports/$id" -H "Authorization: Bearer $ORDERMILL_MERCHANT_TOKEN")
  case "$status" in *'"status":"done"'*|*'"status":"failed"'*) break ;; esac
  sleep 0.5
done
t1=$(date +%s%3N)
echo "== intake alone again =="
load "$work/alone2.json"

read -r a50 a99 aps < <(p "$work/alone.json")
read -r w50 w99 wps < <(p "$work/with.json")
read -r b50 b99 bps < <(p "$work/alone2.json")
echo
echo "report: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["status"], r["rows_done"], "rows,", r.get("size_bytes"), "bytes")' "$status"), $(( (t1 - t0) / 1000 )) s"
echo "report when the load ended: $(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["status"], r["percent"], "%")' "$during")"
echo "intake alone:       $aps orders/s  p50 $a50 ms  p99 $a99 ms"
echo "intake with report: $wps orders/s  p50 $w50 ms  p99 $w99 ms"
echo "intake alone again: $bps orders/s  p50 $b50 ms  p99 $b99 ms"
awk -v a="$a99" -v b="$b99" -v w="$w99" 'BEGIN { m = (a > b ? a : b); n = (a < b ? a : b); printf "p99 ratio (with / alone): %.2f to %.2f (target <= 1.5)\n", w / m, w / n }'
