#!/usr/bin/env bash
# The load test through nginx in front of several vaxslot processes on one
# six-node Redis Cluster (three masters, a replica each; every process waits
# for one replica after each batch), all on loopback: the deployment of
# deploy/cluster/ on one machine.
#
#   loadtest/several.sh [--processes N] -- [vaxslot-loadtest options]
#
# Prints each process's and each Redis node's CPU seconds after the run.
set -euo pipefail
cd "$(dirname "$0")/.."
processes=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --processes) processes=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--processes N] -- [vaxslot-loadtest options]" >&2; exit 2 ;;
  esac
done
source loadtest/lib.sh
cargo build --quiet --release -p vaxslot -p vaxslot-loadtest

start_redis_cluster
servers=""
vaxslot_pids=()
for n in $(seq 1 "$processes"); do
  start_vaxslot target/release/vaxslot --redis-cluster-nodes "$cluster_seeds"
  # start_vaxslot writes one output file: keep this process's apart.
  mv "$work/vaxslot.out" "$work/vaxslot-$n.out"
  vaxslot_pids+=("$server_pid")
  servers="$servers    server ${url#http://} max_fails=1 fail_timeout=5s;"$'\n'
done

port=$(free_port)
nginx_folder
cat > "$work/nginx/vaxslot.conf" <<CONF
upstream vaxslot {
$servers  keepalive 64;
}
server {
  listen 127.0.0.1:$port;
  location /internal/ { return 404; }
  location / {
    client_max_body_size 16m;
    proxy_pass http://vaxslot;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
  }
}
CONF
start_nginx 1
# Every process sees the others before the herd.
sleep 1
echo "nginx on http://127.0.0.1:$port in front of $processes vaxslot processes on a six-node cluster"
target/release/vaxslot-loadtest --url "http://127.0.0.1:$port" --admin-key "$VAXSLOT_ADMIN_KEY" \
  --sre-key "$VAXSLOT_SRE_KEY" --server-pid "${vaxslot_pids[0]}" "$@"
for pid in "${vaxslot_pids[@]}"; do
  awk -v pid="$pid" -v hz="$(getconf CLK_TCK)" \
    '{printf "vaxslot %s: %.1f s CPU\n", pid, ($14 + $15) / hz}' "/proc/$pid/stat"
done
cluster_cpu
