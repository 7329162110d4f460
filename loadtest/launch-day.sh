#!/usr/bin/env bash
# One launch-day measurement, everything on this machine's loopback:
# builds vaxslot and the load generator, starts what the run needs on free
# ports (redis-server with deploy/redis.conf's durability when --store redis,
# the flash-sale peer with --peer), runs vaxslot-loadtest, stops everything.
#
#   loadtest/launch-day.sh [--store embedded|redis] [--peer] [--debug] -- [vaxslot-loadtest options]
#
# Unless --no-audit is among the load test's options, the server is then
# SIGKILLed and restarted on the same store, and the run audited again
# against what the restarted process loaded (vaxslot-loadtest --audit-from).
# Exits with the load test's status (non-zero when an audit fails).
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
source loadtest/lib.sh

redis_url=""
if [ "$store" = redis ] || [ "$peer" = true ]; then
  start_redis
fi
serve_args=()
if [ "$store" = redis ]; then
  serve_args=(--redis-url "$redis_url/0")
fi
start_vaxslot "$bin/vaxslot" "${serve_args[@]}"

loadtest_args=(--url "$url" --server-pid "$server_pid")
if [ "$peer" = true ]; then
  "$bin/flash-sale-peer" --listen 127.0.0.1:0 --redis-url "$redis_url/1" > "$work/peer.out" 2>&1 &
  pids+=($!)
  loadtest_args+=(--peer-url "$(address_in "$work/peer.out")")
fi

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GiB; store: $store"
audit=true
for arg in "$@"; do [ "$arg" = --no-audit ] && audit=false; done
if [ "$audit" = true ]; then
  loadtest_args+=(--audit-record "$work/audit.json")
fi
status=0
"$bin/vaxslot-loadtest" "${loadtest_args[@]}" "$@" || status=$?
if [ "$status" = 0 ] && [ "$audit" = true ]; then
  # The audit that counts reads the store, not the old process's memory:
  # SIGKILL the server, start a new one on the same store, audit it.
  kill -9 "$server_pid"; wait "$server_pid" 2>/dev/null || true
  start_vaxslot "$bin/vaxslot" "${serve_args[@]}"
  "$bin/vaxslot-loadtest" --url "$url" --audit-from "$work/audit.json" || status=$?
fi
exit $status
