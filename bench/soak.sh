#!/usr/bin/env bash
# Soak: steady load on `stsvend dev` for 10 minutes while the emulator issues 120-second tokens,
# so the refresher replaces the token several times under load. Reports errors (target 0),
# resident memory at the start and the end (target: within 5 %), how many tokens were fetched,
# and whether any answer carried a token with less than the minimum remaining validity.
# Not part of CI (it takes 10 minutes).
#
#   bench/soak.sh                 # 600 s
#   SOAK_SECONDS=120 bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TOTAL=${SOAK_SECONDS:-600}
LIFETIME=120
MIN_REMAINING=30
WARMUP=60

command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
cargo build --release --locked --quiet --bin stsvend
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(port)
ADMIN=$(port)
# Audit lines (one per request) go nowhere: ten minutes of them would fill a disk.
env -i PATH="$PATH" HOME="${TMPDIR:-/tmp}" STSVEND_LISTEN=127.0.0.1:"$PORT" STSVEND_ADMIN_LISTEN=127.0.0.1:"$ADMIN" \
  STSVEND_MIN_REMAINING_SECONDS=$MIN_REMAINING STSVEND_RATE_LIMIT_PER_MINUTE=6000000 \
  STSVEND_RATE_LIMIT_BURST=1000000 STSVEND_LOG_FORMAT=json \
  target/release/stsvend dev --token-lifetime $LIFETIME >/dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/get_sts_token" && break; sleep 0.1; done

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }
sts_calls() {
  curl -sf "http://127.0.0.1:$ADMIN/metrics" |
    awk '/^stsvend_sts_calls_total\{/ && /action="AssumeRole"/ && /outcome="success"/ {n += $NF} END {print n + 0}'
}
echo "soak: ${SECONDS_TOTAL}s at 50 connections; tokens last ${LIFETIME}s, ${MIN_REMAINING}s kept back" >&2
calls_before=$(sts_calls)
# RSS every 30 s, to tell a leak (steady climb) from allocator warm-up (a plateau).
( while kill -0 $PID 2>/dev/null; do rss; sleep 30; done >"$PWD/target/soak-rss-series" ) &
result=$(BENCH_MIN_REMAINING=$MIN_REMAINING wrk -t2 -c50 -d"${SECONDS_TOTAL}s" --timeout 5s -s bench/soak.lua \
  "http://127.0.0.1:$PORT/get_sts_token" | tail -n 1)
rss_end=$(rss)
# The first sample after the warm-up: memory climbs for the first half minute of load (buffers,
# allocator arenas) and then holds.
rss_start=$(sed -n "$((WARMUP / 30 + 1))p" target/soak-rss-series)
rss_start=${rss_start:-$rss_end}
calls=$(($(sts_calls) - calls_before))
echo "RSS every 30 s (KiB): $(tr '\n' ' ' <target/soak-rss-series)"
python3 - "$result" "$rss_start" "$rss_end" "$calls" "$SECONDS_TOTAL" "$MIN_REMAINING" <<'PY'
import json, sys
w = json.loads(sys.argv[1]); start, end, calls = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
seconds, min_remaining = sys.argv[5], sys.argv[6]
errors = w["socket_errors"] + w["non_2xx"]
growth = 100.0 * (end - start) / start
print(f"soak, {seconds} s: {w['requests']:,} requests ({w['requests'] / (w['duration_us'] / 1e6):,.0f}/s), "
      f"{errors} errors (target 0), p99 {w['p99_us'] / 1000:.2f} ms")
print(f"RSS {start / 1024:.1f} MiB after the warm-up, {end / 1024:.1f} MiB at the end: {growth:+.1f} % (target within 5 %)")
print(f"{calls} tokens fetched from STS during the run; {w['checked']:,} answers checked, "
      f"{w['short']} served with under {min_remaining} s left (target 0), {w['unreadable']} unreadable; "
      f"least validity left at serve time: {w['least_left_s']} s")
ok = errors == 0 and w["short"] == 0 and w["unreadable"] == 0 and abs(growth) <= 5
sys.exit(0 if ok else 1)
PY
