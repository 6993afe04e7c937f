#!/usr/bin/env bash
# Intake latency with and without a large report running, in the same run (issue 16: while a
# 10⁶-order report runs, intake p99 stays within 1.5× of its value without it).
#
#   scripts/bench/report_intake.sh [orders=1000000] [rate=4000] [duration=20s] [format=csv] [rounds=3]
#
# One release `ordermill serve`: fills it with `orders` orders (batches of 1000), waits until
# the consumers confirmed them all, then runs the same open-loop load (`rate` orders/s for
# `duration`) alone and with an `orders` report over every order running, alternating (`rounds`
# alone, one fewer with). Prints each run's accepted p50/p99, the reports' rows and times, and the
# ratio of the median p99s.
# Needs: a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/../.."
orders=${1:-1000000}
rate=${2:-4000}
duration=${3:-20s}
format=${4:-csv}
rounds=${5:-3}
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
for _ in $(seq 100); do curl -sf -o /dev/null "$base/readyz" && break; sleep 0.1; done

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

echo "== settling (30 s: checkpoints and the last consumer work), then warming up (10 s) =="
sleep 30
"$bin" bench run --target "$base" --skus 1000 --rate "$rate" --duration 10s --quiet >/dev/null

ask() {
  curl -s "$base/api/reports" -H "Authorization: Bearer $ORDERMILL_MERCHANT_TOKEN" \
    -d "{\"kind\": \"orders\", \"from\": $start_ms, \"to\": $end_ms, \"format\": \"$format\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["report_id"])'
}
report() { curl -s "$base/api/reports/$1" -H "Authorization: Bearer $ORDERMILL_MERCHANT_TOKEN"; }
field() { python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(" ".join(str(r.get(k)) for k in sys.argv[2:]))' "$@"; }

# Alternating, so the machine's drift falls on both sides: alone, with, alone, with, alone.
alone=() with=()
for round in $(seq "$rounds"); do
  echo "== round $round: intake alone, $rate orders/s for $duration =="
  load "$work/alone$round.json"
  read -r a50 a99 aps < <(p "$work/alone$round.json")
  alone+=("$a99")
  echo "   $aps orders/s  p50 $a50 ms  p99 $a99 ms"
  [ "$round" = "$rounds" ] && break
  echo "== round $round: intake with a report over all $orders orders running =="
  id=$(ask)
  t0=$(date +%s%3N)
  load "$work/with$round.json"
  during=$(report "$id")
  until report "$id" | grep -qE '"status":"(done|failed)"'; do sleep 0.5; done
  t1=$(date +%s%3N)
  read -r w50 w99 wps < <(p "$work/with$round.json")
  with+=("$w99")
  echo "   $wps orders/s  p50 $w50 ms  p99 $w99 ms; report $(field "$(report "$id")" status rows_done size_bytes) in $(( (t1 - t0) / 1000 )) s (at the load's end: $(field "$during" status percent)%)"
done
echo
echo "p99 alone (ms):       ${alone[*]}"
echo "p99 with report (ms): ${with[*]}"
python3 - "${alone[*]}" "${with[*]}" <<'PY'
import statistics, sys
alone = [float(x) for x in sys.argv[1].split()]
withr = [float(x) for x in sys.argv[2].split()]
a, w = statistics.median(alone), statistics.median(withr)
print(f"median p99: alone {a:.1f} ms, with a report {w:.1f} ms, ratio {w / a:.2f} (target <= 1.5)")
PY
