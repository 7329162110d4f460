#!/usr/bin/env bash
# The nemesis (issue 22): seeded faults against several vaxslot processes on
# a six-node loopback Redis Cluster, and a checker over every request's
# answer and the state read straight from Redis.
#
#   loadtest/nemesis.sh [--debug] [vaxslot-nemesis options]
#   loadtest/nemesis.sh --seed 1000 --schedules 200 --summary nemesis.jsonl   # the long run
#   loadtest/nemesis.sh --seed 7 --schedules 1                                # replay one schedule
#
# --debug uses the debug builds (what `cargo test` built: CI's short run).
# Needs redis-server and redis-cli, and Debian's python3 with aiosmtpd (the
# slow SMTP server). Exit 1 when a schedule shows an anomaly: its seed, its
# faults and how to replay it are printed, and its work folder is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [[ ${1:-} == --debug ]]; then
  profile=debug
  shift
fi
if [[ $profile == release ]]; then
  cargo build --quiet --release -p vaxslot -p vaxslot-loadtest
else
  cargo build --quiet -p vaxslot -p vaxslot-loadtest
fi
exec "target/$profile/vaxslot-nemesis" --binary "target/$profile/vaxslot" "$@"
