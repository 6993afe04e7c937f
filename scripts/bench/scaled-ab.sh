#!/usr/bin/env bash
# Two builds on the same scaled-out load, alternated, judged pair by pair.
#
# On a shared VM the whole box runs up to a third slower for minutes at a time: every process's
# CPU per order rises together, PostgreSQL's and RabbitMQ's as much as ordermill's. A run of A
# followed by a run of B a minute later shares that phase more often than two runs ten minutes
# apart, so this compares within each pair (B ÷ A) and reports the median of those ratios, not
# the ratio of two averages. Pairs run A B, B A, A B, ... so neither build always goes first.
#
# Usage: scripts/bench/scaled-ab.sh BIN_A BIN_B [pairs=4] [duration=15s] [connections=64]
#   Each run is one `scripts/bench/scaled.sh DURATION CONNECTIONS` with BIN set (its other
#   variables, STORE, API_NODES, WORKERS, ORDERMILL_*, pass through unchanged). Every run's
#   figures go to stdout as they come; the medians follow at the end, with the api's and the
#   worker's CPU per order relative to PostgreSQL's in the same run (below 1: B does less work).
# Example: cp target/release/ordermill /tmp/ordermill-before; (change, rebuild);
#   scripts/bench/scaled-ab.sh /tmp/ordermill-before target/release/ordermill 4 15s 64
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/bench/ab-pairs.sh
. scripts/bench/ab-pairs.sh
ab_args 4 "$@"
runs=$(mktemp)
trap 'rm -f "$runs"' EXIT

# run LABEL BIN PAIR: one scaled.sh run; appends "LABEL PAIR orders/s p99 ratio api worker database
# rabbitmq redis" to $runs (0 where scaled.sh printed no such figure) and prints that line.
run() {
  local out
  out=$(BIN=$2 scripts/bench/scaled.sh "$duration" "$conns" 2>&1) || {
    printf '%s\n' "$out" | tail -20 >&2
    echo "scaled.sh failed for $2 (its last lines above)" >&2
    exit 1
  }
  printf '%s\n' "$out" | awk -v label="$1" -v pair="$3" '
    /^throughput/ { tp = $4 }
    /^latency/ { p99 = $8 }
    /^ratio orders\/ceiling/ { ratio = $3 }
    /µs\/order/ { cpu[$1] = $2 }
    END {
      printf "%s %d %s %s %s %s %s %s %s %s\n", label, pair, tp + 0, p99 + 0, ratio + 0,
        cpu["api"] + 0, cpu["worker"] + 0, cpu["database"] + 0, cpu["rabbitmq"] + 0, cpu["redis"] + 0
    }' | tee -a "$runs"
}

echo "pair by pair: build pair orders/s p99_ms ratio_to_ceiling | µs/order: api worker database rabbitmq redis"
ab_alternate run

echo "== B ÷ A, median over $pairs pairs (A = $bin_a, B = $bin_b) =="
awk '
  { for (i = 3; i <= 10; i++) v[$1, $2, i] = $i; n = ($2 > n ? $2 : n) }
  function median(arr, k,   i, j, t) {
    for (i = 2; i <= k; i++) for (j = i; j > 1 && arr[j - 1] > arr[j]; j--) { t = arr[j]; arr[j] = arr[j - 1]; arr[j - 1] = t }
    return k % 2 ? arr[(k + 1) / 2] : (arr[k / 2] + arr[k / 2 + 1]) / 2
  }
  END {
    split("orders/s p99 ratio_to_ceiling api_us_per_order worker_us_per_order database_us_per_order rabbitmq_us_per_order redis_us_per_order", name, " ")
    for (i = 3; i <= 10; i++) {
      k = 0; wins = 0; delete r
      for (p = 1; p <= n; p++) if (v["A", p, i] > 0 && v["B", p, i] > 0) {
        r[++k] = v["B", p, i] / v["A", p, i]; if (r[k] > 1) wins++
      }
      if (k > 0) printf "%-22s %6.3f   (B higher in %d of %d pairs)\n", name[i - 2], median(r, k), wins, k
    }
    # A faster minute lowers every process alike; the share of ordermill next to PostgreSQL (which
    # neither build changes) moves only when the build does less work.
    split("api worker", own, " ")
    for (o = 1; o <= 2; o++) {
      i = 5 + o; k = 0; wins = 0; delete r
      for (p = 1; p <= n; p++) if (v["A", p, i] > 0 && v["B", p, i] > 0 && v["A", p, 8] > 0 && v["B", p, 8] > 0) {
        r[++k] = (v["B", p, i] / v["B", p, 8]) / (v["A", p, i] / v["A", p, 8]); if (r[k] > 1) wins++
      }
      if (k > 0) printf "%-22s %6.3f   (B higher in %d of %d pairs)\n", own[o] "_per_database_us", median(r, k), wins, k
    }
  }' "$runs"
