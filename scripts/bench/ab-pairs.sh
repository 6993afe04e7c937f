# Sourced by scaled-ab.sh and serve-ab.sh: the arguments and the alternation they share.
#
# ab_args DEFAULT_PAIRS "$@": checks BIN_A BIN_B [pairs] [duration] [connections] and sets
#   bin_a, bin_b, pairs, duration and conns (15s and 64 connections unless given).
# ab_alternate RUN: calls `RUN LABEL BIN PAIR` for every pair, A then B in odd pairs and B then
#   A in even ones, so neither build always goes first (the VM's speed drifts within a pair too).

ab_args() {
  local default_pairs=$1
  shift
  if [ $# -lt 2 ] || [ ! -x "$1" ] || [ ! -x "$2" ]; then
    echo "usage: $0 BIN_A BIN_B [pairs=$default_pairs] [duration=15s] [connections=64] (two executable builds)" >&2
    exit 2
  fi
  bin_a=$1
  bin_b=$2
  pairs=${3:-$default_pairs}
  duration=${4:-15s}
  conns=${5:-64}
}

ab_alternate() {
  local run=$1 pair
  for pair in $(seq "$pairs"); do
    if [ $((pair % 2)) = 1 ]; then
      "$run" A "$bin_a" "$pair"; "$run" B "$bin_b" "$pair"
    else
      "$run" B "$bin_b" "$pair"; "$run" A "$bin_a" "$pair"
    fi
  done
}
