#!/usr/bin/env bash
# Paired measurement: two servers loaded at the same time, on the same server CPU, each by its
# own wrk, so that the host's speed, which drifts by a quarter within seconds on this VM, is the
# same for both. Prints, per round, the ratio of B's server CPU per 1000 requests to A's and of
# its requests a second, then the median of each. For a change: its binary against main's; for
# the issue 18 targets, stsvend against the ceiling.
#
#   bench/pair.sh                                  # ceiling (A) against stsvend (B), 256 connections
#   BENCH_CONNECTIONS=50 bench/pair.sh             # at 50
#   BENCH_B=no-audit bench/pair.sh                 # B is stsvend with its audit lines off
#   BENCH_A=/tmp/stsvend-main BENCH_B=target/release/stsvend bench/pair.sh   # two builds
#
# A or B is `ceiling`, `stsvend` (target/release/stsvend), `no-audit` or the path of another
# stsvend binary; stsvend's settings are bench/run.sh's (audit lines to a file, rate limits on).
# BENCH_ROUNDS (default 5) rounds of BENCH_DURATION seconds (default 6), each after 2 s of
# warm-up. Under paired load each server has about half the CPU, so the ratios are not those of
# bench/run.sh (one server at a time); they tell, to about 1 %, which of two is cheaper.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${BENCH_A:-ceiling}
B=${BENCH_B:-stsvend}
CONNECTIONS=${BENCH_CONNECTIONS:-256}
ROUNDS=${BENCH_ROUNDS:-5}
DURATION=${BENCH_DURATION:-6}
STS_LATENCY_MS=${BENCH_STS_LATENCY_MS:-30}
if (($(nproc) < 2)); then
  echo "bench/pair.sh needs two CPUs: one for the servers, one for the load" >&2
  exit 2
fi
command -v wrk >/dev/null || { echo "bench/pair.sh needs wrk (apt-get install wrk)" >&2; exit 2; }
ON_SERVER=(taskset -c 0)
ON_LOAD=(taskset -c 1)

# The release builds as they ship, $WORK and the processes to kill on exit (PIDS).
# shellcheck source=bench/callgrind-lib.sh
source bench/callgrind-lib.sh
build_release
cargo build --release --locked --quiet --example bench-ceiling

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {
  for _ in $(seq 150); do
    curl -sf -o "${2:-/dev/null}" "$1" && return 0
    sleep 0.1
  done
  echo "no answer from $1 within 15 s" >&2
  return 1
}
ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

"${ON_LOAD[@]}" "$BIN/examples/bench-mock-sts" --latency-ms "$STS_LATENCY_MS" >"$WORK/mock.out" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$WORK/mock.out" && break; sleep 0.05; done
MOCK=http://$(sed -n 's/^listening on //p' "$WORK/mock.out")

# A stsvend as bench/run.sh starts it. BINARY PORT LOG [EXTRA=VALUE...]
start_stsvend() {
  local binary=$1 port=$2 log=$3
  shift 3
  "${ON_SERVER[@]}" env -i PATH="$PATH" HOME="$WORK" \
    ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tBenchmarkKey0000 ALIBABA_CLOUD_ACCESS_KEY_SECRET=BenchmarkSecret000000000000000 \
    STSVEND_LISTEN=127.0.0.1:"$port" STSVEND_ADMIN_LISTEN=127.0.0.1:0 \
    STSVEND_STS_ENDPOINT="$MOCK/" STSVEND_ROLE_ARN=acs:ram::1000000000000000:role/sls-web-track \
    STSVEND_LOGSTORE=bench-project/bench-logstore STSVEND_LOG_FORMAT=json \
    STSVEND_RATE_LIMIT_PER_MINUTE=6000000 STSVEND_RATE_LIMIT_BURST=1000000 "$@" \
    "$binary" serve >/dev/null 2>"$log" &
  PIDS+=($!)
  LAST_PID=$!
}

# The ceiling answers the bytes a stsvend answers, so one stsvend starts first.
BODY_PORT=$(free_port)
start_stsvend "$BIN/stsvend" "$BODY_PORT" "$WORK/body.log"
wait_for "http://127.0.0.1:$BODY_PORT/get_sts_token" "$WORK/body.json"
kill "$LAST_PID"

# start SIDE WHAT: sets SIDE's pid and url.
declare -A PID URL
start() {
  local side=$1 what=$2 port
  port=$(free_port)
  case $what in
    ceiling) "${ON_SERVER[@]}" "$BIN/examples/bench-ceiling" "$WORK/body.json" --listen 127.0.0.1:"$port" >/dev/null &
      PIDS+=($!) LAST_PID=$! ;;
    stsvend) start_stsvend "$BIN/stsvend" "$port" "$WORK/$side.log" ;;
    no-audit) start_stsvend "$BIN/stsvend" "$port" "$WORK/$side.log" RUST_LOG=stsvend::audit=off,info ;;
    *) [[ -x $what ]] || { echo "BENCH_$side: $what is not ceiling, stsvend, no-audit or a binary" >&2; exit 2; }
      start_stsvend "$what" "$port" "$WORK/$side.log" ;;
  esac
  PID[$side]=$LAST_PID
  URL[$side]=http://127.0.0.1:$port/get_sts_token
  wait_for "${URL[$side]}"
}
start A "$A"
start B "$B"

echo "A: $A, B: $B, $CONNECTIONS connections each, $ROUNDS rounds of ${DURATION}s"
RATIOS=$WORK/ratios
for round in $(seq "$ROUNDS"); do
  "${ON_LOAD[@]}" wrk -t1 -c"$CONNECTIONS" -d2s "${URL[A]}" >/dev/null &
  warm=$!
  "${ON_LOAD[@]}" wrk -t1 -c"$CONNECTIONS" -d2s "${URL[B]}" >/dev/null
  wait "$warm"
  a0=$(ticks "${PID[A]}") b0=$(ticks "${PID[B]}")
  timeout $((DURATION + 20)) "${ON_LOAD[@]}" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "${URL[A]}" >"$WORK/a.txt" &
  load=$!
  timeout $((DURATION + 20)) "${ON_LOAD[@]}" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "${URL[B]}" >"$WORK/b.txt"
  wait "$load"
  a1=$(ticks "${PID[A]}") b1=$(ticks "${PID[B]}")
  python3 - "$WORK" "$round" "$((a1 - a0))" "$((b1 - b0))" "$DURATION" "$(getconf CLK_TCK)" >>"$RATIOS" <<'EOF'
import re, sys
work, round_ = sys.argv[1], sys.argv[2]
a_ticks, b_ticks, secs, clk_tck = (int(v) for v in sys.argv[3:7])
def rate(side):
    text = open(f"{work}/{side}.txt").read()
    m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    if not m or float(m.group(1)) == 0:
        sys.exit(f"round {round_}: wrk against {side.upper()} reported no requests")
    return float(m.group(1))
a, b = rate("a"), rate("b")
# CPU ms per 1000 requests.
a_cpu = a_ticks * 1000 / clk_tck * 1000 / (a * secs)
b_cpu = b_ticks * 1000 / clk_tck * 1000 / (b * secs)
print(f"{b_cpu / a_cpu:.3f} {b / a:.3f} {a_cpu:.2f} {b_cpu:.2f} {a:.0f} {b:.0f}")
EOF
  read -r cpu req a_cpu b_cpu a_rate b_rate <<<"$(tail -n 1 "$RATIOS")"
  echo "round $round: B/A CPU per request $cpu ($a_cpu, $b_cpu ms per 1000), req/s $req ($a_rate, $b_rate)"
done
python3 - "$RATIOS" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
cpu = sorted(float(r[0]) for r in rows)
req = sorted(float(r[1]) for r in rows)
print(f"median B/A: CPU per request {statistics.median(cpu):.3f} (range {cpu[0]:.3f}-{cpu[-1]:.3f}), "
      f"req/s {statistics.median(req):.3f} (range {req[0]:.3f}-{req[-1]:.3f})")
EOF
