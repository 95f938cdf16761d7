#!/usr/bin/env bash
# The README's picture of the results page: serves a results database with
# `host serve` and saves the top of one run's page (headless Chromium through
# tests/browser/page.mjs; `scripts/test.sh` installs what it needs).
# usage: scripts/screenshot.sh DB RUN OUT.png [HOST]
set -euo pipefail
db=${1:?usage: screenshot.sh DB RUN OUT.png [HOST]} run=${2:?} out=${3:?}
host=${4:-target/release/host}
port=$((20000 + RANDOM % 20000))
"$host" serve --db "$db" --addr "127.0.0.1:$port" > /dev/null &
server=$!
trap 'kill $server' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/api/runs" > /dev/null && break; sleep 0.1; done
node "$(dirname "$0")/../tests/browser/page.mjs" "http://127.0.0.1:$port/#/run/$run" --screenshot "$out" --clip 1100
