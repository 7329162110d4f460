#!/usr/bin/env bash
# The public reads under wrk, against the demo data set (a ward's day:
# 131 venues), beside /healthz in the same run, with and without
# compression. One binary per run; pass two to compare them alternately.
#
#   loadtest/public-reads.sh [--seconds N] [--connections N] BINARY [BINARY...]
#
# Prints one line per (binary, request): req/s, p99 and bytes per answer.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=10
connections=64
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || { echo "usage: $0 [--seconds N] [--connections N] BINARY [BINARY...]" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 2; }
source loadtest/lib.sh

# The demo's first bookable weekday with the mass venue (Thursday) or any
# weekday: the whole ward's day.
day=$(python3 -c 'import datetime as d; t=d.date.today()+d.timedelta(days=2)
while t.weekday()>=5: t+=d.timedelta(days=1)
print(t)')

measure() { # binary label path [header]
  local binary=$1 label=$2 path=$3 header=${4:-}
  local args=(-t2 -c"$connections" -d"${seconds}s" --latency)
  [[ -n $header ]] && args+=(-H "$header")
  local out
  out=$(wrk "${args[@]}" "$url$path")
  local rps p99 bytes
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  if [[ -n $header ]]; then
    bytes=$(curl -s -H "$header" "$url$path" | wc -c)
  else
    bytes=$(curl -s "$url$path" | wc -c)
  fi
  printf '%-40s %-32s %10s req/s  p99 %-8s %8s bytes\n' "$binary" "$label" "$rps" "$p99" "$bytes"
}

for binary in "$@"; do
  rm -rf "$work/store"
  start_vaxslot "$binary" --demo
  measure "$binary" "/healthz" "/healthz"
  measure "$binary" "availability, whole day" "/v1/availability?date=$day"
  measure "$binary" "availability, whole day, gzip" "/v1/availability?date=$day" "Accept-Encoding: gzip"
  measure "$binary" "availability, whole day, br" "/v1/availability?date=$day" "Accept-Encoding: gzip, deflate, br"
  measure "$binary" "availability, one venue" "/v1/availability?date=$day&venue_id=clinic-001"
  measure "$binary" "venues" "/v1/venues"
  measure "$binary" "venues, br" "/v1/venues" "Accept-Encoding: br"
  kill -9 "$server_pid"; wait "$server_pid" 2>/dev/null || true
done
