#!/usr/bin/env bash
# One launch-day measurement, everything on this machine's loopback:
# builds vaxslot and the load generator, starts what the run needs on free
# ports (redis-server with deploy/redis.conf's durability when --store redis,
# the flash-sale peer with --peer), runs vaxslot-loadtest, stops everything.
#
#   loadtest/launch-day.sh [--store embedded|redis|cluster] [--peer] [--mail off|sink|down] [--debug] -- [vaxslot-loadtest options]
#
# --store cluster: a six-node Redis Cluster on loopback (three masters with a
# replica each; vaxslot waits for one replica after each batch).
# --mail sink: mail on, to a real SMTP server on loopback (tests/support/
# smtp_sink.py, Debian's python3-aiosmtpd); --mail down: mail on, to a port
# where no SMTP server listens (every try fails; the outbox fills).
# Unless --no-audit is among the load test's options, the server is then
# SIGKILLed and restarted on the same store, and the run audited again
# against what the restarted process loaded (vaxslot-loadtest --audit-from).
# Exits with the load test's status (non-zero when an audit fails).
set -euo pipefail
cd "$(dirname "$0")/.."

store=embedded
peer=false
mail=off
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --store) store="$2"; shift 2 ;;
    --peer) peer=true; shift ;;
    --mail) mail="$2"; shift 2 ;;
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
if [ "$store" = cluster ]; then
  start_redis_cluster
fi
case "$mail" in
  off) ;;
  sink|down)
    smtp_port=$(free_port)
    export VAXSLOT_SMTP_URL="smtp://127.0.0.1:$smtp_port" VAXSLOT_MAIL_FROM=vaccine@loadtest.example.jp
    export VAXSLOT_PUBLIC_URL=https://vaccine.loadtest.example.jp/ VAXSLOT_CALL_CENTRE_PHONE=0120-000-000
    if [ "$mail" = sink ]; then
      /usr/bin/python3 tests/support/smtp_sink.py "$smtp_port" "$work/mail.jsonl" > "$work/sink.out" 2>&1 &
      pids+=($!)
      until grep -q ready "$work/sink.out" 2>/dev/null; do sleep 0.1; done
    fi
    ;;
  *) echo "--mail is off, sink or down" >&2; exit 2 ;;
esac
serve_args=()
if [ "$store" = redis ]; then
  serve_args=(--redis-url "$redis_url/0")
fi
if [ "$store" = cluster ]; then
  serve_args=(--redis-cluster-nodes "$cluster_seeds")
fi
start_vaxslot "$bin/vaxslot" "${serve_args[@]}"

loadtest_args=(--url "$url" --server-pid "$server_pid")
if [ "$peer" = true ]; then
  "$bin/flash-sale-peer" --listen 127.0.0.1:0 --redis-url "$redis_url/1" > "$work/peer.out" 2>&1 &
  pids+=($!)
  loadtest_args+=(--peer-url "$(address_in "$work/peer.out")")
fi

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GiB; store: $store; mail: $mail"
audit=true
for arg in "$@"; do [ "$arg" = --no-audit ] && audit=false; done
if [ "$audit" = true ]; then
  loadtest_args+=(--audit-record "$work/audit.json")
fi
status=0
"$bin/vaxslot-loadtest" "${loadtest_args[@]}" "$@" || status=$?
if [ "$store" = cluster ]; then
  cluster_cpu
fi
if [ "$status" = 0 ] && [ "$audit" = true ]; then
  # The audit that counts reads the store, not the old process's memory:
  # SIGKILL the server, start a new one on the same store, audit it.
  kill -9 "$server_pid"; wait "$server_pid" 2>/dev/null || true
  start_vaxslot "$bin/vaxslot" "${serve_args[@]}"
  "$bin/vaxslot-loadtest" --url "$url" --audit-from "$work/audit.json" || status=$?
fi
if [ "$mail" = sink ]; then
  echo "mail: $(wc -l < "$work/mail.jsonl" 2>/dev/null || echo 0) delivered to the sink by the end"
fi
exit $status
