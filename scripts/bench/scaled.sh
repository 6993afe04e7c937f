#!/usr/bin/env bash
# Scaled-out ordermill against RabbitMQ's own ceiling for the same topology, in one run.
# Usage: scripts/bench/scaled.sh [duration=20s] [connections=64] [rate]
#   rate: open-loop orders/s for the load (default: closed loop)
# Needs: a release build (cargo build --release), PostgreSQL, RabbitMQ and Redis on loopback
# (the URLs below; override with ORDERMILL_TEST_*_URL), psql.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-20s}
conns=${2:-64}
rate=${3:-}
bin=target/release/ordermill
pg=${ORDERMILL_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
amqp=${ORDERMILL_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
redis=${ORDERMILL_TEST_REDIS_URL:-redis://127.0.0.1:6379}
name=bench_$(date +%s)
export ORDERMILL_STORE=$pg ORDERMILL_BUS=$amqp ORDERMILL_CACHE=$redis
export ORDERMILL_POSTGRES__SCHEMA=$name ORDERMILL_REDIS__KEY_PREFIX=$name
export ORDERMILL_RABBITMQ__QUEUE_PREFIX=$name. ORDERMILL_RABBITMQ__EXCHANGE=$name.orders
export ORDERMILL_RABBITMQ__DEAD_LETTER_EXCHANGE=$name.dlx ORDERMILL_LOG_FILTER=warn
# The api node accepts it and `bench run --setup` sends it.
export ORDERMILL_MERCHANT_TOKEN=${ORDERMILL_MERCHANT_TOKEN:-bench-merchant-$name}
sql() { psql "$pg" -Atqc "SET search_path TO $name; $1"; }
cleanup() {
  kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
  psql "$pg" -qc "DROP SCHEMA IF EXISTS $name CASCADE" >/dev/null 2>&1
  for q in $(rabbitmqctl -q list_queues name 2>/dev/null | grep "^$name\."); do rabbitmqctl -q delete_queue "$q" >/dev/null; done
}
trap cleanup EXIT

echo "== RabbitMQ's own ceiling: persistent publish with confirms, fan-out to 3 queues, consume with ack =="
"$bin" bench broker-ceiling --amqp "$amqp" --messages 50000 2>/dev/null | tee /tmp/ordermill-ceiling.txt
ceiling=$(awk '/^publish/ {for (i=1;i<=NF;i++) if ($i=="events/s,") print $(i-1)}' /tmp/ordermill-ceiling.txt)

"$bin" migrate >/dev/null
"$bin" api --listen 127.0.0.1:18090 >/tmp/ordermill-api.log 2>&1 &
"$bin" worker --metrics-listen 127.0.0.1:18091 >/tmp/ordermill-worker.log 2>&1 &
for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:18090/readyz && break; sleep 0.1; done

echo "== scaled-out ordermill: 1 api + 1 worker, load for $duration on $conns connections =="
start=$(date +%s.%N)
"$bin" bench run --target http://127.0.0.1:18090 --connections "$conns" --duration "$duration" \
  --setup --skus 1000 --quiet ${rate:+--rate "$rate"} | tee /tmp/ordermill-load.txt
loaded=$(date +%s.%N)
total=$(sql "SELECT count(*) FROM orders")
until [ "$(sql "SELECT count(*) FROM orders WHERE status IN ('confirmed','cancelled')")" = "$total" ]; do sleep 0.2; done
done_at=$(date +%s.%N)
awk -v n="$total" -v s="$start" -v l="$loaded" -v d="$done_at" -v c="$ceiling" 'BEGIN {
  e2e = n / (d - s);
  printf "orders accepted          %d in %.1f s of load\n", n, l - s;
  printf "all final after          %.1f s (drain %.1f s after the load)\n", d - s, d - l;
  printf "end-to-end confirmed     %.0f orders/s\n", e2e;
  printf "broker ceiling           %.0f events/s (publish+confirm, 3 queues)\n", c;
  printf "ratio orders/ceiling     %.2f (issue 10 target: 0.5)\n", e2e / c;
}'
echo "commit batches: $(curl -s 127.0.0.1:18090/metrics | grep -E '^ordermill_commit_batch_orders_(sum|count)' | awk '{v[$1]=$2} END { printf "mean %.1f orders per transaction", v["ordermill_commit_batch_orders_sum"] / v["ordermill_commit_batch_orders_count"] }')"
# Where the time went: mean seconds per stage (api: per request or commit; worker: per batch).
stages() {
  curl -s "$1/metrics" | awk -v who="$2" '
    /^ordermill_stage_duration_seconds_(sum|count)\{/ {
      match($0, /stage="[^"]*"/); stage = substr($0, RSTART + 7, RLENGTH - 8);
      q = ""; if (match($0, /queue="[^"]*"/)) q = substr($0, RSTART + 7, RLENGTH - 8);
      key = (q == "" ? "" : q "/") stage;
      if ($0 ~ /_sum\{/) sum[key] = $2; else count[key] = $2;
    }
    END { for (k in count) if (count[k] > 0) printf "%-7s %-28s mean %8.3f ms over %d\n", who, k, 1000 * sum[k] / count[k], count[k] }' | sort
}
echo "== stages =="
stages http://127.0.0.1:18090 api
stages http://127.0.0.1:18091 worker
