# Sourced by launch-day.sh and cpu-per-request.sh: a scratch folder, the
# processes started for one measurement (all SIGKILLed and reaped on exit),
# and how to start redis-server and vaxslot on free loopback ports.

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

# Starts redis-server with deploy/redis.conf's durability (AOF, fsync before
# every reply); sets redis_url (no database number).
start_redis() {
  command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)" >&2; exit 2; }
  local port
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --appendonly yes \
    --appendfsync always --save "" --maxmemory-policy noeviction --daemonize no \
    --logfile "$work/redis.log" &
  pids+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  redis_url="redis://127.0.0.1:$port"
}

# Starts `BINARY serve` on a free port with its store in $work and the load
# test's keys in the environment (exported: vaxslot-loadtest reads them too);
# further arguments go to `serve`. Sets server_pid and url.
start_vaxslot() {
  local binary=$1
  shift
  export VAXSLOT_ADMIN_KEY=loadtest-admin VAXSLOT_SRE_KEY=loadtest-sre
  export VAXSLOT_STAFF_KEY=loadtest-staff VAXSLOT_TOKEN_SECRET=loadtest-secret
  rm -f "$work/vaxslot.out" "$work/vaxslot.err"
  RUST_LOG=warn "$binary" serve --listen 127.0.0.1:0 --data-dir "$work/store" "$@" \
    > "$work/vaxslot.out" 2> "$work/vaxslot.err" &
  server_pid=$!
  pids+=($server_pid)
  url=$(address_in "$work/vaxslot.out")
}
