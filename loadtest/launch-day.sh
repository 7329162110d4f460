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
source loadtest/lib.sh

redis_url=""
if [ "$store" = redis ] || [ "$peer" = true ]; then
  start_redis
fi
if [ "$store" = redis ]; then
  start_vaxslot "$bin/vaxslot" --redis-url "$redis_url/0"
else
  start_vaxslot "$bin/vaxslot"
fi

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
