#!/usr/bin/env bash
# One launch-day measurement, everything on this machine's loopback:
# builds vaxslot and the load generator, starts what the run needs on free
# ports (redis-server with deploy/redis.conf's durability when --store redis,
# the flash-sale peer with --peer), runs vaxslot-loadtest, stops everything.
#
#   loadtest/launch-day.sh [--store embedded|redis] [--peer] [--debug] -- [vaxslot-loadtest options]
#
# Exits with the load test's status (non-zero when the audit fails).
set -euo pipefail
cd "$(dirname "$0")/.."

store=embedded
peer=false
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --store) store="$2"; shift 2 ;;
    --peer) peer=true; shift ;;
    --debug) profile=debug; shift ;;
    --) shift; break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

if [ "$profile" = release ]; then
  cargo build --quiet --release -p vaxslot -p vaxslot-loadtest
else
  cargo build --quiet -p vaxslot -p vaxslot-loadtest
fi
bin="target/$profile"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Waits for a line "... listening on http://ADDR" in a file; prints ADDR.
address_in() {
  for _ in $(seq 1 200); do
    if grep -q "listening on http://" "$1" 2>/dev/null; then
      grep -o 'http://[0-9.:]*' "$1" | head -1
      return
    fi
    sleep 0.05
  done
  echo "no address in $1" >&2; cat "$1" >&2; exit 1
}

redis_url=""
if [ "$store" = redis ] || [ "$peer" = true ]; then
  command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)" >&2; exit 2; }
  port=$(free_port)
  # deploy/redis.conf's durability: AOF, fsync before every reply.
  redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --appendonly yes \
    --appendfsync always --save "" --maxmemory-policy noeviction --daemonize no \
    --logfile "$work/redis.log" &
  pids+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis_url="redis://127.0.0.1:$port"
fi

export VAXSLOT_ADMIN_KEY=loadtest-admin VAXSLOT_SRE_KEY=loadtest-sre
export VAXSLOT_STAFF_KEY=loadtest-staff VAXSLOT_TOKEN_SECRET=loadtest-secret
server_args=(serve --listen 127.0.0.1:0 --data-dir "$work/store")
[ "$store" = redis ] && server_args+=(--redis-url "$redis_url/0")
RUST_LOG=warn "$bin/vaxslot" "${server_args[@]}" > "$work/vaxslot.out" 2> "$work/vaxslot.err" &
server_pid=$!
pids+=($server_pid)
url=$(address_in "$work/vaxslot.out")

loadtest_args=(--url "$url" --server-pid "$server_pid")
if [ "$peer" = true ]; then
  "$bin/flash-sale-peer" --listen 127.0.0.1:0 --redis-url "$redis_url/1" > "$work/peer.out" 2>&1 &
  pids+=($!)
  loadtest_args+=(--peer-url "$(address_in "$work/peer.out")")
fi

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GiB; store: $store"
status=0
"$bin/vaxslot-loadtest" "${loadtest_args[@]}" "$@" || status=$?
exit $status
