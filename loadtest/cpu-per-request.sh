#!/usr/bin/env bash
# Server CPU per booking request, steadier than req/s on a shared machine:
# starts vaxslot (embedded store, or Redis with deploy/redis.conf's
# durability), runs a booking herd with vaxslot-loadtest, and while it runs
# measures `perf stat -e task-clock` on the server for WINDOW seconds,
# divided by the requests the server's own counter saw in that window.
#
#   loadtest/cpu-per-request.sh [--store embedded|redis] [--refusals] [--residents N] [--window S]
#
# --refusals measures `503 booking_closed` (kill switch engaged) instead of
# committed bookings. Needs perf (Debian: linux-perf) and, for Redis, redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."

store=embedded outcome=committed residents=300000 window=3
while [ $# -gt 0 ]; do
  case "$1" in
    --store) store="$2"; shift 2 ;;
    --refusals) outcome=booking_closed; shift ;;
    --residents) residents="$2"; shift 2 ;;
    --window) window="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 2; }
cargo build --quiet --release -p vaxslot -p vaxslot-loadtest
source loadtest/lib.sh

if [ "$store" = redis ]; then
  start_redis
  start_vaxslot target/release/vaxslot --redis-url "$redis_url/0"
else
  start_vaxslot target/release/vaxslot
fi


loadtest_args=(--url "$url" --residents "$residents" --baseline-s 0 --quiet --no-audit)
wait_for='^logins'
if [ "$outcome" = booking_closed ]; then
  # A small herd, then a refusal phase long enough to hold the window.
  loadtest_args=(--url "$url" --residents 5000 --baseline-s 0 --quiet --no-audit
    --refusal-s $((window + 3)))
  wait_for='^bookings'
fi
target/release/vaxslot-loadtest "${loadtest_args[@]}" > "$work/loadtest" 2>&1 &
pids+=($!)
for _ in $(seq 1 1200); do grep -q "$wait_for" "$work/loadtest" && break; sleep 0.05; done
sleep 0.5

counted() {
  curl -s "$url/metrics" | awk -v name="vaxslot_booking_requests_total{outcome=\"$outcome\"}" '$1 == name { print $2 }'
}
before=$(counted)
ms=$(perf stat -x, -e task-clock -p "$server_pid" -- sleep "$window" 2>&1 | awk -F, '/task-clock/ { print $1 }')
after=$(counted)
python3 - "$ms" "$before" "$after" "$outcome" "$store" "$window" <<'PY'
import sys
ms, before, after, outcome, store, window = sys.argv[1:]
n = int(float(after)) - int(float(before))
print(f"{store}: {n} {outcome} requests in {window} s; server CPU {float(ms):.0f} ms "
      f"= {float(ms) * 1000 / n:.1f} µs per request" if n else "no requests in the window")
PY
