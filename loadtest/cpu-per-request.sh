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
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

server_args=(serve --listen 127.0.0.1:0 --data-dir "$work/store")
if [ "$store" = redis ]; then
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --appendonly yes \
    --appendfsync always --save "" --daemonize no --logfile "$work/redis.log" &
  pids+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  server_args+=(--redis-url "redis://127.0.0.1:$port/0")
fi
export VAXSLOT_ADMIN_KEY=loadtest-admin VAXSLOT_SRE_KEY=loadtest-sre
export VAXSLOT_STAFF_KEY=loadtest-staff VAXSLOT_TOKEN_SECRET=loadtest-secret
RUST_LOG=warn target/release/vaxslot "${server_args[@]}" > "$work/out" 2> "$work/err" &
server=$!
pids+=($server)
for _ in $(seq 1 200); do grep -q "listening on" "$work/out" && break; sleep 0.05; done
url=$(grep -o 'http://[0-9.:]*' "$work/out" | head -1)

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
ms=$(perf stat -x, -e task-clock -p "$server" -- sleep "$window" 2>&1 | awk -F, '/task-clock/ { print $1 }')
after=$(counted)
python3 - "$ms" "$before" "$after" "$outcome" "$store" "$window" <<'PY'
import sys
ms, before, after, outcome, store, window = sys.argv[1:]
n = int(float(after)) - int(float(before))
print(f"{store}: {n} {outcome} requests in {window} s; server CPU {float(ms):.0f} ms "
      f"= {float(ms) * 1000 / n:.1f} µs per request" if n else "no requests in the window")
PY
