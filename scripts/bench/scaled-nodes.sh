# Sourced by scaled.sh and deals.sh (SCALED=1): scaled-out nodes on a schema, key prefix and
# queues of their own, named $name, on the engines below (override with ORDERMILL_TEST_*_URL),
# removed on exit. Reads $bin; STORE=mysql for the MySQL store. Call start_nodes API_NODES WORKERS:
# api node i listens on 127.0.0.1:(18088 + 2i), worker i's metrics on (18089 + 2i); $pids lists
# them as kind:pid.
pg=${ORDERMILL_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
amqp=${ORDERMILL_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
redis=${ORDERMILL_TEST_REDIS_URL:-redis://127.0.0.1:6379}
my=${ORDERMILL_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
store=${STORE:-postgres}
name=bench_$(date +%s)
export ORDERMILL_BUS=$amqp ORDERMILL_CACHE=$redis
export ORDERMILL_POSTGRES__SCHEMA=$name ORDERMILL_MYSQL__DATABASE=$name ORDERMILL_REDIS__KEY_PREFIX=$name
export ORDERMILL_RABBITMQ__QUEUE_PREFIX=$name. ORDERMILL_RABBITMQ__EXCHANGE=$name.orders
export ORDERMILL_RABBITMQ__DEAD_LETTER_EXCHANGE=$name.dlx ORDERMILL_LOG_FILTER=warn
# As deploy/ordermill-scaled.toml sets them (the code's defaults, 2, 0ms and 0ms, suit slow
# outside calls and the embedded writer).
export ORDERMILL_WORKERS__CONCURRENCY=${ORDERMILL_WORKERS__CONCURRENCY:-1}
export ORDERMILL_COMMIT__LINGER=${ORDERMILL_COMMIT__LINGER:-2ms}
export ORDERMILL_WORKERS__LINGER=${ORDERMILL_WORKERS__LINGER:-10ms}
# The api node accepts it and `bench run --setup` sends it.
export ORDERMILL_MERCHANT_TOKEN=${ORDERMILL_MERCHANT_TOKEN:-bench-merchant-$name}
if [ "$store" = mysql ]; then
  export ORDERMILL_STORE=$my
  db_process=mariadbd
  # mysql://user[:password]@host[:port]/db → the client's flags (loopback benches only).
  my_hostport=${my#*@}; my_hostport=${my_hostport%%/*}; my_user=${my#mysql://}; my_user=${my_user%%[:@]*}
  sql() { mysql -h "${my_hostport%:*}" -P "${my_hostport##*:}" -u "$my_user" -N -B -e "USE $name; $1"; }
else
  export ORDERMILL_STORE=$pg
  db_process=postgres
  sql() { psql "$pg" -Atqc "SET search_path TO $name; $1"; }
fi
cleanup() {
  kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
  if [ "$store" = mysql ]; then sql "DROP DATABASE IF EXISTS $name" >/dev/null 2>&1; fi
  psql "$pg" -qc "DROP SCHEMA IF EXISTS $name CASCADE" >/dev/null 2>&1
  for q in $(rabbitmqctl -q list_queues name 2>/dev/null | grep "^$name\."); do rabbitmqctl -q delete_queue "$q" >/dev/null; done
}
trap cleanup EXIT

start_nodes() {
  "$bin" migrate >/dev/null
  pids=()
  for i in $(seq "$1"); do
    "$bin" api --listen 127.0.0.1:$((18088 + 2 * i)) >/tmp/ordermill-api$i.log 2>&1 &
    pids+=("api:$!")
  done
  for i in $(seq "$2"); do
    "$bin" worker --metrics-listen 127.0.0.1:$((18089 + 2 * i)) >/tmp/ordermill-worker$i.log 2>&1 &
    pids+=("worker:$!")
  done
  for i in $(seq "$1"); do
    for _ in $(seq 100); do curl -sf -o /dev/null 127.0.0.1:$((18088 + 2 * i))/readyz && break; sleep 0.1; done
  done
}
