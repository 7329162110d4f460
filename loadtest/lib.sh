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

# Starts a six-node Redis Cluster (three masters, a replica each) with the
# same durability, each node in its own folder; sets cluster_seeds
# (host:port,…) and cluster_ports. Returns once every replica is in sync.
start_redis_cluster() {
  command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)" >&2; exit 2; }
  cluster_ports=()
  cluster_pids=()
  local port bus addresses=()
  for node in 1 2 3 4 5 6; do
    port=$(free_port); bus=$(free_port)
    mkdir -p "$work/node$node"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$work/node$node" --appendonly yes \
      --appendfsync always --save "" --maxmemory-policy noeviction --daemonize no \
      --cluster-enabled yes --cluster-port "$bus" --cluster-config-file nodes.conf \
      --cluster-node-timeout 2000 --repl-diskless-sync-delay 0 \
      --logfile "$work/node$node/redis.log" &
    pids+=($!)
    cluster_pids+=($!)
    cluster_ports+=("$port")
    addresses+=("127.0.0.1:$port")
  done
  for port in "${cluster_ports[@]}"; do
    for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  done
  redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes > "$work/cluster-create.out"
  for port in "${cluster_ports[@]}"; do
    until redis-cli -p "$port" cluster info | grep -q cluster_state:ok; do sleep 0.1; done
    until redis-cli -p "$port" info replication | grep -qE 'master_link_status:up|state=online'; do sleep 0.1; done
  done
  cluster_seeds=$(IFS=,; echo "${addresses[*]}")
}

# One line per cluster node: its port, role and the CPU seconds it used.
cluster_cpu() {
  local i ticks role
  ticks=$(getconf CLK_TCK)
  for i in "${!cluster_pids[@]}"; do
    role=$(redis-cli -p "${cluster_ports[$i]}" info replication | sed -n 's/^role:\(.*\)\r$/\1/p')
    awk -v port="${cluster_ports[$i]}" -v role="$role" -v hz="$ticks" \
      '{printf "node %s (%s): %.1f s CPU\n", port, role, ($14 + $15) / hz}' "/proc/${cluster_pids[$i]}/stat"
  done
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

# A folder for nginx in $work that its workers (running as nobody) can
# write their temp files in: $work/nginx.
nginx_folder() {
  mkdir -p "$work/nginx"
  chmod 755 "$work"
  chmod 777 "$work/nginx"
}

# Starts nginx with WORKERS worker processes and the http-level
# configuration the caller wrote to $work/nginx/vaxslot.conf, listening on
# $port; returns once it answers /healthz. Sets nginx_master; stopped on exit.
start_nginx() {
  local nginx
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  [[ -x $nginx ]] || { echo "nginx is needed (apt-get install nginx-light)" >&2; exit 2; }
  cat > "$work/nginx/nginx.conf" <<CONF
worker_processes $1;
error_log $work/nginx/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  include $work/nginx/vaxslot.conf;
}
CONF
  "$nginx" -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
  nginx_master=$!
  pids+=($nginx_master)
  # SIGTERM first, and wait, so that the master stops its workers (a
  # SIGKILLed master leaves them running).
  trap 'kill -TERM $nginx_master 2>/dev/null || true; wait $nginx_master 2>/dev/null || true; cleanup' EXIT
  for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
}
