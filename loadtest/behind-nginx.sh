#!/usr/bin/env bash
# The load test through the nginx microcache of deploy/nginx/vaxslot.conf,
# in front of one vaxslot process (embedded store), all on loopback:
#
#   loadtest/behind-nginx.sh [--nginx-workers N] -- [vaxslot-loadtest options]
#
# e.g.  loadtest/behind-nginx.sh -- --preset yokohama --accept-encoding "gzip, deflate, br" --connections 128
set -euo pipefail
cd "$(dirname "$0")/.."
nginx_workers=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --nginx-workers) nginx_workers=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--nginx-workers N] -- [vaxslot-loadtest options]" >&2; exit 2 ;;
  esac
done
source loadtest/lib.sh
cargo build --quiet --release -p vaxslot -p vaxslot-loadtest

start_vaxslot target/release/vaxslot
upstream=${url#http://}
port=$(free_port)
nginx_folder
sed -e "s|server 127.0.0.1:8080;|server $upstream;|" \
    -e "s|/var/cache/nginx/vaxslot|$work/nginx/cache|" \
    -e "s|listen 80;|listen 127.0.0.1:$port;|" deploy/nginx/vaxslot.conf > "$work/nginx/vaxslot.conf"
cp deploy/nginx/vaxslot-cache.conf "$work/nginx/"
start_nginx "$nginx_workers"
echo "nginx ($nginx_workers worker(s)) on http://127.0.0.1:$port in front of vaxslot on $url"
target/release/vaxslot-loadtest --url "http://127.0.0.1:$port" --admin-key "$VAXSLOT_ADMIN_KEY" \
  --sre-key "$VAXSLOT_SRE_KEY" --server-pid "$server_pid" "$@"
