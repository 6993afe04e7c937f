#!/usr/bin/env bash
# Scaled-out ordermill against RabbitMQ's own ceiling for the same topology (measured before
# and after the pipeline's run, the mean used), in one run, and
# what each order costs each process in CPU (the figures docs/SCALING.md's arithmetic uses),
# what it costs PostgreSQL in commits and WAL (steadier than throughput on a noisy VM: compare
# builds on these), and how long an order took from accepted to confirmed.
# Usage: [BIN=path] [STORE=postgres|mysql] [API_NODES=1] [WORKERS=1] [WARMUP=3s] scripts/bench/scaled.sh [duration=20s] [connections=64] [rate]
#   STORE=mysql: the MySQL store (ORDERMILL_TEST_MYSQL_URL, default root@127.0.0.1:3306; the
#   `mysql` client reads the counts) instead of PostgreSQL
#   rate: open-loop orders/s for the load (default: closed loop)
#   TLS to the engines: rediss:// and amqps:// URLs in ORDERMILL_TEST_REDIS_URL and
#   ORDERMILL_TEST_AMQP_URL; a private CA's PEM in ORDERMILL_REDIS__CA_FILE and
#   ORDERMILL_RABBITMQ__CA_FILE (the broker's ceiling is then measured over TLS too)
#   LOAD_ARGS: the catalog options of `bench run` (default "--skus 1000": 80% of orders on 10
#   flash-sale SKUs); issue 10's one hot SKU is LOAD_ARGS="--skus 1 --hot-skus 1"
#   Customer JWTs: the nodes read ORDERMILL_AUTH__CUSTOMER=jwt, ORDERMILL_AUTH__JWT__ALGORITHM
#   and ORDERMILL_AUTH__JWT__PUBLIC_KEY_FILE from this environment; add "--jwt-key PRIVATE.pem
#   --jwt-algorithm ALG [--orders-per-customer N]" to LOAD_ARGS (docs/BENCHMARKS.md, "What a
#   customer JWT costs")
#   Keyed orders, as a client that retries sends them: add "--idempotency-keys" to LOAD_ARGS
#   Batches: add "--batch N" (N orders per POST /api/orders/batch; with --idempotency-keys each
#   order carries its own key in the body)
#   API_NODES > 1: that many api nodes behind nginx (deploy/nginx.conf's proxy settings), the
#   load sent to nginx; WORKERS: that many worker processes, each consuming every queue.
# Needs: a release build (cargo build --release; BIN runs another binary, e.g. an older
# build for a same-hour comparison), PostgreSQL, RabbitMQ and Redis on loopback
# (the URLs below; override with ORDERMILL_TEST_*_URL), psql. PG_STATS=1 adds what PostgreSQL
# read per table and index.
set -euo pipefail
cd "$(dirname "$0")/../.."
api_nodes=${API_NODES:-1}
workers=${WORKERS:-1}
duration=${1:-20s}
conns=${2:-64}
rate=${3:-}
bin=${BIN:-target/release/ordermill}
load_args=${LOAD_ARGS:---skus 1000}
# shellcheck source=scripts/bench/scaled-nodes.sh
. scripts/bench/scaled-nodes.sh

echo "== RabbitMQ's own ceiling: persistent publish with confirms, fan-out to 3 queues, consume with ack =="
ceiling_args=(--amqp "$amqp" --messages 50000)
# Over amqps:// with a private CA, the nodes' CA file serves the ceiling's run as well.
if [ -n "${ORDERMILL_RABBITMQ__CA_FILE:-}" ]; then ceiling_args+=(--ca-file "$ORDERMILL_RABBITMQ__CA_FILE"); fi
"$bin" bench broker-ceiling "${ceiling_args[@]}" 2>/dev/null | tee /tmp/ordermill-ceiling.txt
ceiling=$(awk '/^publish/ {for (i=1;i<=NF;i++) if ($i=="events/s,") print $(i-1)}' /tmp/ordermill-ceiling.txt)

start_nodes "$api_nodes" "$workers"
target=http://127.0.0.1:18090
if [ "$api_nodes" -gt 1 ]; then
  upstreams=$(for i in $(seq "$api_nodes"); do echo "server 127.0.0.1:$((18088 + 2 * i));"; done)
  cat > /tmp/ordermill-nginx.conf <<CONF
worker_processes 1;
pid /tmp/ordermill-nginx.pid;
error_log /tmp/ordermill-nginx.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream ordermill_api { $upstreams keepalive 128; keepalive_requests 100000; }
  server {
    listen 127.0.0.1:18080;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header X-Forwarded-For \$remote_addr;
    location / { proxy_pass http://ordermill_api; }
  }
}
CONF
  nginx -c /tmp/ordermill-nginx.conf -g 'daemon off;' &
  pids+=("nginx:$!")
  for _ in $(seq 50); do curl -sf -o /dev/null 127.0.0.1:18080/readyz && break; sleep 0.1; done
  target=http://127.0.0.1:18080
fi

# CPU seconds (user + system) of one process, or of every process with that command name.
cpu_of_pid() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_of_comm() { local sum=0; for p in $(pgrep -x "$1"); do sum=$(awk -v a="$sum" -v b="$(cpu_of_pid "$p")" 'BEGIN { print a + b }'); done; echo "$sum"; }
cpu_snapshot() {
  local api=0 worker=0 nginx=0
  for entry in "${pids[@]}"; do
    role=${entry%%:*}; pid=${entry#*:}
    value=$(cpu_of_pid "$pid")
    case $role in
      api) api=$(awk -v a="$api" -v b="$value" 'BEGIN { print a + b }') ;;
      worker) worker=$(awk -v a="$worker" -v b="$value" 'BEGIN { print a + b }') ;;
      nginx) nginx=$(cpu_of_comm nginx) ;;
    esac
  done
  echo "$api $worker $nginx $(cpu_of_comm "$db_process") $(cpu_of_comm beam.smp) $(cpu_of_comm redis-server)"
}

# A node's first second is slower (new PostgreSQL connections load their caches and plans,
# the load generator opens its connections): WARMUP of the same load, unmeasured, first, so the
# figures are the steady state. WARMUP=0 measures from a cold start.
warmup=${WARMUP:-3s}
warm=0
if [ "$warmup" != 0 ]; then
  echo "== warm-up: $warmup of the same load (not measured) =="
  "$bin" bench run --target "$target" --connections "$conns" --duration "$warmup" \
    --setup $load_args --quiet ${rate:+--rate "$rate"} > /dev/null
  until [ "$(sql "SELECT count(*) FROM orders WHERE status NOT IN ('confirmed','cancelled')")" = 0 ]; do sleep 0.2; done
  warm=$(sql "SELECT count(*) FROM orders")
fi
echo "== scaled-out ordermill on $store: $api_nodes api + $workers worker, load for $duration on $conns connections =="
# Where the time went during the load (each node's stage histograms, read by `bench run`
# before and after it): every api node and every worker. A build older than `--metrics`
# (BIN of an earlier commit) loads without them.
stage_args=()
if "$bin" bench run --help | grep -q -- '--metrics'; then
  for i in $(seq "$api_nodes"); do stage_args+=(--metrics "http://127.0.0.1:$((18088 + 2 * i))"); done
  for i in $(seq "$workers"); do stage_args+=(--metrics "http://127.0.0.1:$((18089 + 2 * i))"); done
fi
# PostgreSQL's commits and WAL over the load and drain (server-wide: keep the box quiet).
pg_counters() {
  [ "$store" = postgres ] || return 0
  psql "$pg" -Atc "SELECT (SELECT sum(xact_commit) FROM pg_stat_database) || ' ' || wal_records || ' ' || wal_bytes FROM pg_stat_wal"
}
pg_before=$(pg_counters)
cpu_before=$(cpu_snapshot)
start=$(date +%s.%N)
"$bin" bench run --target "$target" --connections "$conns" --duration "$duration" \
  --setup $load_args --quiet ${rate:+--rate "$rate"} "${stage_args[@]}" | tee /tmp/ordermill-load.txt
loaded=$(date +%s.%N)
# Requests in flight when the load stopped may still commit: wait until none is left open.
until [ "$(sql "SELECT count(*) FROM orders WHERE status NOT IN ('confirmed','cancelled')")" = 0 ]; do sleep 0.2; done
total=$(( $(sql "SELECT count(*) FROM orders") - warm ))
done_at=$(date +%s.%N)
cpu_after=$(cpu_snapshot)
pg_after=$(pg_counters)
# The ceiling once more, now that the pipeline is idle: on a shared VM it moves by a quarter
# from one minute to the next, and the mean of the two brackets the pipeline's run.
"$bin" bench broker-ceiling "${ceiling_args[@]}" 2>/dev/null > /tmp/ordermill-ceiling-after.txt
ceiling_after=$(awk '/^publish/ {for (i=1;i<=NF;i++) if ($i=="events/s,") print $(i-1)}' /tmp/ordermill-ceiling-after.txt)
awk -v n="$total" -v s="$start" -v l="$loaded" -v d="$done_at" -v c1="$ceiling" -v c2="$ceiling_after" 'BEGIN {
  e2e = n / (d - s);
  c = (c1 + c2) / 2;
  printf "orders accepted          %d in %.1f s of load\n", n, l - s;
  printf "all final after          %.1f s (drain %.1f s after the load)\n", d - s, d - l;
  printf "end-to-end confirmed     %.0f orders/s\n", e2e;
  printf "broker ceiling           %.0f events/s (publish+confirm, 3 queues; %.0f before the load, %.0f after)\n", c, c1, c2;
  printf "ratio orders/ceiling     %.2f (issue 10 target: 0.5)\n", e2e / c;
}'
# What each order cost each part, load and drain together (the load generator excluded).
echo "== CPU per order (µs) and what one core of each would carry =="
awk -v n="$total" -v before="$cpu_before" -v after="$cpu_after" 'BEGIN {
  split(before, b, " "); split(after, a, " ");
  split("api worker nginx database rabbitmq redis", name, " ");
  for (i = 1; i <= 6; i++) {
    us = 1e6 * (a[i] - b[i]) / n;
    if (us > 0) printf "%-11s %8.1f µs/order   %8.0f orders/s per core\n", name[i], us, 1e6 / us;
  }
}'
if [ -n "$pg_before" ]; then
  awk -v n="$total" -v before="$pg_before" -v after="$pg_after" 'BEGIN {
    split(before, b, " "); split(after, a, " ");
    printf "database work per order  %.3f commits, %.1f WAL records, %.0f WAL bytes\n",
      (a[1] - b[1]) / n, (a[2] - b[2]) / n, (a[3] - b[3]) / n;
  }'
fi
# Accepted → confirmed, as the first worker saw it since the nodes started (warm-up included).
echo "accept → confirmed (worker 1): $(curl -s 127.0.0.1:18091/metrics | awk '
  /^ordermill_accept_to_confirm_seconds_bucket/ { match($0, /le="[^"]*"/); le[++k] = substr($0, RSTART + 4, RLENGTH - 5); c[k] = $2 }
  /^ordermill_accept_to_confirm_seconds_sum/ { sum = $2 } /^ordermill_accept_to_confirm_seconds_count/ { n = $2 }
  END { if (n == 0) { print "none"; exit } for (i = 1; i <= k; i++) if (c[i] >= 0.5 * n && p50 == "") p50 = le[i];
    for (i = 1; i <= k; i++) if (c[i] >= 0.99 * n && p99 == "") p99 = le[i];
    printf "mean %.1f ms, p50 <= %s s, p99 <= %s s over %d orders", 1000 * sum / n, p50, p99, n }')"
echo "commit batches (api 1): $(curl -s 127.0.0.1:18090/metrics | grep -E '^ordermill_commit_batch_orders_(sum|count)' | awk '{v[$1]=$2} END { printf "mean %.1f orders per transaction", v["ordermill_commit_batch_orders_sum"] / v["ordermill_commit_batch_orders_count"] }')"
# Orders shed for waiting past http.max_queue_wait, by what held them up (a node behind, or a
# commit the store was slow to finish): a closed loop counts them as "rejected".
echo "orders shed (api 1): $(curl -s 127.0.0.1:18090/metrics | awk '/^ordermill_orders_shed_total/ {
    c = "all"; if (match($0, /cause="[^"]*"/)) c = substr($0, RSTART + 7, RLENGTH - 8); n[c] += $2 }
  END { s = ""; for (k in n) s = s sprintf("%s%s %d", (s == "" ? "" : ", "), k, n[k]); print (s == "" ? "none" : s) }')"
# PG_STATS=1: which tables and indexes PostgreSQL read, and how much, in this run's schema.
if [ -n "${PG_STATS:-}" ]; then
  sleep 1 # statistics reach the views when a backend goes idle
  echo "== PostgreSQL: index scans (rows read per scan) and sequential scans in $name =="
  psql "$pg" -Atc "SELECT format('%-34s %-40s %9s scans %11s read %6s per scan', relname, indexrelname,
      idx_scan, idx_tup_read, round(idx_tup_read::numeric / greatest(idx_scan, 1), 1))
    FROM pg_stat_user_indexes WHERE schemaname = '$name' AND idx_scan > 0
    ORDER BY idx_tup_read DESC LIMIT 15"
  psql "$pg" -Atc "SELECT format('%-34s %9s seq scans %11s rows read', relname, seq_scan, seq_tup_read)
    FROM pg_stat_user_tables WHERE schemaname = '$name' AND seq_scan > 0 ORDER BY seq_tup_read DESC LIMIT 10"
fi
