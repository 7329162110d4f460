#!/usr/bin/env bash
# What residents and reservations cost in memory, for the capacity plan in
# BENCHMARKS.md: one Redis (deploy/redis.conf's durability) and one vaxslot
# process on free loopback ports; a herd of R residents of whom a share
# books (--capacity-factor); then Redis's used_memory and the process's
# VmRSS, against the same figures before the herd.
#
#   loadtest/memory.sh RESIDENTS CAPACITY_FACTOR
set -euo pipefail
cd "$(dirname "$0")/.."
residents=${1:?residents}
factor=${2:?capacity factor}

cargo build --quiet --release -p vaxslot -p vaxslot-loadtest
bin=target/release
source loadtest/lib.sh
start_redis
start_vaxslot "$bin/vaxslot" --redis-url "$redis_url/0"

used_memory() { redis-cli -u "$redis_url" info memory | tr -d '\r' | sed -n 's/^used_memory://p'; }
rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$server_pid/status"; }

redis_before=$(used_memory)
rss_before=$(rss_kib)
"$bin/vaxslot-loadtest" --url "$url" --residents "$residents" --venue-days 50 \
  --capacity-factor "$factor" --baseline-s 0 --no-audit --quiet > "$work/loadtest.out"
grep -E "committed|bookings" "$work/loadtest.out" | head -3
redis_after=$(used_memory)
rss_after=$(rss_kib)
# The change streams hold the last minute's commits: counted apart, as
# they do not grow with the residents.
streams=0
for key in $(redis-cli -u "$redis_url" --scan --pattern 'vaxslot:*changes'); do
  streams=$(( streams + $(redis-cli -u "$redis_url" memory usage "$key" samples 0) ))
done
echo "residents=$residents capacity_factor=$factor"
echo "redis used_memory: $redis_before -> $redis_after bytes, of which change streams $streams"
echo "  per resident, streams apart: $(( (redis_after - redis_before - streams) / residents )) bytes"
echo "vaxslot VmRSS: $rss_before -> $rss_after KiB ($(( (rss_after - rss_before) * 1024 / residents )) bytes per resident)"
