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
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $nginx ]] || { echo "nginx is needed (apt-get install nginx-light)" >&2; exit 2; }
source loadtest/lib.sh
cargo build --quiet --release -p vaxslot -p vaxslot-loadtest

start_vaxslot target/release/vaxslot
upstream=${url#http://}
port=$(free_port)
mkdir -p "$work/nginx"
# nginx's workers run as nobody: they must be able to write their temp files.
chmod 755 "$work"
chmod 777 "$work/nginx"
sed -e "s|server 127.0.0.1:8080;|server $upstream;|" \
    -e "s|/var/cache/nginx/vaxslot|$work/nginx/cache|" \
    -e "s|listen 80;|listen 127.0.0.1:$port;|" deploy/nginx/vaxslot.conf > "$work/nginx/vaxslot.conf"
cp deploy/nginx/vaxslot-cache.conf "$work/nginx/"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes $nginx_workers;
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
echo "nginx ($nginx_workers worker(s)) on http://127.0.0.1:$port in front of vaxslot on $url"
target/release/vaxslot-loadtest --url "http://127.0.0.1:$port" --admin-key "$VAXSLOT_ADMIN_KEY" \
  --sre-key "$VAXSLOT_SRE_KEY" --server-pid "$server_pid" "$@"
