#!/usr/bin/env bash
# Instructions per order, by thread or process and by function, under valgrind's callgrind: a
# count that does not move with the VM's speed or what else runs on it, so two builds compare
# to the percent where wall-clock runs on a noisy VM need many pairs.
#
# The server runs under callgrind with collection off; after a warm-up, collection is switched
# on for a closed-loop load on one hot SKU and stays on until every order of the window is
# confirmed (the consumers' work counts too), then the counts are dumped. Under valgrind the
# server runs ~50x slower, so its group commits are smaller than at full speed (~4-8 orders
# each, against 30-100): per-commit and per-call costs weigh more per order than they would
# there.
#
# Usage: [SCALED=1] scripts/bench/callgrind.sh [BIN=target/release/ordermill] [seconds=40] [connections]
#   default: a fresh `ordermill serve` (8 connections); the sqlite writer thread, the runtime's
#     worker threads and the rest, then each one's costliest ordermill functions;
#   SCALED=1: one `ordermill api` and one `ordermill worker` on the engines of
#     scripts/bench/scaled-nodes.sh (a schema, key prefix and queues of their own; 16
#     connections); each process, then its costliest ordermill functions.
# Prints instructions per order, then the functions (inclusive, per order). The raw profiles stay
# in $OUT (default /tmp/ordermill-callgrind) for `callgrind_annotate --inclusive=yes FILE`.
# Needs: valgrind, curl; a release build (its debug line tables name the functions).
set -euo pipefail
cd "$(dirname "$0")/../.."
real_bin=${1:-target/release/ordermill}
seconds=${2:-40}
scaled=${SCALED:-}
conns=${3:-$([ -n "$scaled" ] && echo 16 || echo 8)}
out=${OUT:-/tmp/ordermill-callgrind}
command -v callgrind_control >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out"
real_bin=$(realpath "$real_bin")
# `$out/under-valgrind serve|api|worker ...` runs that node under callgrind; any other command runs plainly.
cat >"$out/under-valgrind" <<WRAP
#!/usr/bin/env bash
case "\$1" in
  serve|api|worker) exec valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \\
    --callgrind-out-file="$out/callgrind.\$1.%p" "$real_bin" "\$@" ;;
  *) exec "$real_bin" "\$@" ;;
esac
WRAP
chmod +x "$out/under-valgrind"

# until_ready URL: valgrind makes a node's start take seconds.
until_ready() {
  for _ in $(seq 1 600); do curl -sf -o /dev/null "$1/readyz" && return 0; sleep 0.5; done
  echo "$1 did not become ready under valgrind; see the logs in $out and /tmp/ordermill-*.log" >&2
  exit 1
}
# counter URL NAME: a counter's total over its labels.
counter() { curl -s "$1/metrics" | awk -v name="$2" '$1 ~ "^"name {s += $2} END {print s + 0}'; }

if [ -n "$scaled" ]; then
  bin="$out/under-valgrind"
  # shellcheck source=scripts/bench/scaled-nodes.sh
  . scripts/bench/scaled-nodes.sh
  start_nodes 1 1
  target=http://127.0.0.1:18090
  confirmed_at=http://127.0.0.1:18091
  until_ready "$target"
else
  port=18190
  data=$(mktemp -d)
  export ORDERMILL_MERCHANT_TOKEN=${ORDERMILL_MERCHANT_TOKEN:-bench-merchant-$$}
  trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
  "$out/under-valgrind" serve --listen "127.0.0.1:$port" --data-dir "$data" >"$out/serve.log" 2>&1 &
  target=http://127.0.0.1:$port
  confirmed_at=$target
  until_ready "$target"
fi
echo "warming up (collection off)..."
"$real_bin" bench run --target "$target" --setup --skus 1 --hot-skus 1 --connections 4 \
  --duration 5s >/dev/null
sleep 2

profiled=$(pgrep -f -- "--callgrind-out-file=$out/callgrind" || true)
[ -n "$profiled" ] || { echo "no process under callgrind found" >&2; exit 1; }
accepted0=$(counter "$target" ordermill_orders_accepted_total)
confirmed0=$(counter "$confirmed_at" ordermill_orders_confirmed_total)
for pid in $profiled; do callgrind_control -i on "$pid" >/dev/null; done
echo "loading for ${seconds}s over $conns connections (collection on)..."
"$real_bin" bench run --target "$target" --skus 1 --hot-skus 1 \
  --connections "$conns" --duration "${seconds}s" >"$out/bench.txt" 2>&1
for _ in $(seq 1 300); do
  accepted=$(counter "$target" ordermill_orders_accepted_total)
  confirmed=$(counter "$confirmed_at" ordermill_orders_confirmed_total)
  [ $((accepted - accepted0)) -le $((confirmed - confirmed0)) ] && break
  sleep 1
done
for pid in $profiled; do callgrind_control -i off "$pid" >/dev/null; done
orders=$(($(counter "$target" ordermill_orders_accepted_total) - accepted0))
confirmed=$(($(counter "$confirmed_at" ordermill_orders_confirmed_total) - confirmed0))
for pid in $profiled; do callgrind_control -d "$pid" >/dev/null; done

echo "orders in the window: $orders accepted, $confirmed confirmed"
[ "$orders" -gt 0 ] || { echo "no orders were accepted; see $out/bench.txt" >&2; exit 1; }

# total FILE...: the instructions the files count.
total() { awk '/^totals:/ {s += $2; nextfile} END {print s + 0}' "$@"; }
# top FILE...: the ordermill functions costing most per order, inclusive.
top() {
  callgrind_annotate --inclusive=yes "$@" 2>/dev/null \
    | awk -v n="$orders" '/^ *[0-9,]+ \(/ && /crates\/(core|store|server|bus|cache)\/src\// && !/=>/ {
        ir = $1; gsub(",", "", ir); fn = $0
        sub(/^ *[0-9,]+ \([ 0-9.]+%\) +/, "", fn); sub(/ \[[^]]*\]$/, "", fn); sub(/^[^:]*\.rs:/, "", fn)
        if (!seen[fn]++ && shown++ < 12) printf "  %10d  %s\n", ir / n, substr(fn, 1, 110) }'
}
# The dump names each thread's counts FILE.PID-NN (the threads with counts: total above 0).
groups=()
if [ -n "$scaled" ]; then
  for kind in api worker; do
    mapfile -t files < <(for f in "$out"/callgrind."$kind".*-*; do [ "$(total "$f")" -gt 0 ] && echo "$f"; done)
    groups+=("ordermill $kind|${files[*]}")
  done
else
  writer=(); workers=(); rest=()
  for f in "$out"/callgrind.serve.*-*; do
    [ "$(total "$f")" -gt 0 ] || continue
    # Each thread by what only it runs, as inlining leaves it named (`writer::run` and tokio's
    # `worker::run` can vanish into their callers): the consumers' work runs on the writer only,
    # and tasks run on the runtime's worker threads only.
    if grep -q -E 'sqlite::writer::(run|ConsumerWork)' "$f"; then writer+=("$f")
    elif grep -q -E 'multi_thread::worker::(run|Context::run_task)' "$f"; then workers+=("$f")
    else rest+=("$f"); fi
  done
  groups+=("sqlite writer thread|${writer[*]}" "runtime worker threads|${workers[*]}" "other threads|${rest[*]}")
fi
echo "instructions per order"
all=0
for group in "${groups[@]}"; do
  read -r -a files <<<"${group#*|}"
  n=0; [ ${#files[@]} -gt 0 ] && n=$(total "${files[@]}")
  all=$((all + n))
  printf '  %-32s %12d\n' "${group%%|*}" $((n / orders))
done
printf '  %-32s %12d\n' "all" $((all / orders))
for group in "${groups[@]}"; do
  read -r -a files <<<"${group#*|}"
  [ ${#files[@]} -gt 0 ] || continue
  [ "${group%%|*}" = "other threads" ] && continue
  # The threads that do the work, busiest first: given several files with a small thread's
  # first (a main thread's), callgrind_annotate 3.19 listed that thread's few functions only.
  n=$(total "${files[@]}")
  mapfile -t busy < <(for f in "${files[@]}"; do t=$(total "$f"); [ $((t * 20)) -ge "$n" ] && echo "$t $f"; done | sort -rn | cut -d' ' -f2)
  echo "${group%%|*}, per order, inclusive (ordermill's functions):"
  top "${busy[@]}"
done
echo "profiles: $out (callgrind_annotate --inclusive=yes FILE)"
