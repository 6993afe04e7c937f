#!/usr/bin/env bash
# CPU time a server process spends per request under wrk load: the figure that decides the
# ratio to the ceiling on a 2-core machine, less noisy than req/s.
# Usage: scripts/bench/cpu-per-request.sh PID URL [duration=8s] [connections=128]
set -euo pipefail
pid=$1; url=$2; duration=${3:-8s}; conns=${4:-128}
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(cpu)
out=$(wrk -t1 -c"$conns" -d"$duration" -s "$(dirname "$0")/order.lua" "$url")
after=$(cpu)
reqs=$(echo "$out" | awk '/requests in/ {print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
awk -v b="$before" -v a="$after" -v n="$reqs" -v t="$ticks" -v r="$rps" \
  'BEGIN { printf "req/s %.0f  cpu %.2f cores-s  %.1f us of server CPU per request\n", r, (a-b)/t, (a-b)/t/n*1e6 }'
