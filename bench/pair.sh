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
#   BENCH_A=stsvend BENCH_B=per-user BENCH_CONNECTIONS=50 bench/pair.sh     # issue 18's per-user ratio
#   BENCH_A=per-user:/tmp/stsvend-main BENCH_B=per-user bench/pair.sh      # two builds, per-user path
#
# A or B is `ceiling`, `stsvend` (target/release/stsvend), `no-audit`, the path of another
# stsvend binary, or `per-user` / `per-user:BINARY`; stsvend's settings are bench/run.sh's (audit
# lines to a file, rate limits on). `per-user` is bench/run.sh's per-user scenario: `jwt` mode
# with RS256 from a JWKS file, BENCH_SUBJECTS (default 10000) distinct subjects each asked once
# by bench-drive (a token each, about 100 s for 10000 at the 100/s AssumeRole budget), then
# replayed in turn by wrk (bench/replay.lua): the cached per-user path with its whole working set.
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
cargo build --release --locked --quiet --example bench-drive
SUBJECTS=${BENCH_SUBJECTS:-10000}
JWT_KEYS=$PWD/tests/fixtures/jwt # test keys, public: fine for a benchmark on loopback
export BENCH_DIR=$PWD/bench BENCH_TOKENS=$WORK/tokens.txt # for bench/replay.lua

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

# start SIDE WHAT: sets SIDE's pid, url and wrk options (WRK_SCRIPT).
declare -A PID URL WRK_SCRIPT
start() {
  local side=$1 what=$2 port binary
  port=$(free_port)
  WRK_SCRIPT[$side]=
  case $what in
    per-user | per-user:*)
      binary=${what#per-user}
      binary=${binary#:}
      binary=${binary:-$BIN/stsvend}
      [[ -x $binary ]] || { echo "BENCH_$side: $binary is not an executable" >&2; exit 2; }
      # As bench/run.sh: every subject comes from one loopback address, so the per-network
      # limit on new tokens is lifted, or it, not the AssumeRole budget, would set the pace.
      start_stsvend "$binary" "$port" "$WORK/$side.log" STSVEND_AUTH=jwt \
        STSVEND_JWT_JWKS_FILE="$JWT_KEYS/jwks.json" STSVEND_JWT_ALGORITHMS=RS256 \
        STSVEND_JWT_ACCEPT_ANY_AUDIENCE=true STSVEND_STS_BUDGET_PER_SECOND=100 \
        STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE=1000000
      PID[$side]=$LAST_PID
      URL[$side]=http://127.0.0.1:$port/get_sts_token
      WRK_SCRIPT[$side]=$BENCH_DIR/replay.lua
      wait_for "http://127.0.0.1:$port/readyz"
      echo "$side: $SUBJECTS subjects, a token each"
      timeout 900 "${ON_LOAD[@]}" "$BIN/examples/bench-drive" subjects "${URL[$side]}" \
        "rs256:rsa-1:$JWT_KEYS/rsa_private.pem" "$SUBJECTS" 64 "$BENCH_TOKENS" >/dev/null
      return ;;
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
# load SIDE SECONDS: one wrk against SIDE's server (replaying JWTs for `per-user`).
load() {
  local script=()
  [[ -n ${WRK_SCRIPT[$1]} ]] && script=(-s "${WRK_SCRIPT[$1]}")
  timeout $(($2 + 20)) "${ON_LOAD[@]}" wrk -t1 -c"$CONNECTIONS" -d"$2s" "${script[@]}" "${URL[$1]}"
}
for round in $(seq "$ROUNDS"); do
  load A 2 >/dev/null &
  warm=$!
  load B 2 >/dev/null
  wait "$warm"
  a0=$(ticks "${PID[A]}") b0=$(ticks "${PID[B]}")
  load A "$DURATION" >"$WORK/a.txt" &
  load=$!
  load B "$DURATION" >"$WORK/b.txt"
  wait "$load"
  a1=$(ticks "${PID[A]}") b1=$(ticks "${PID[B]}")
  python3 - "$WORK" "$round" "$((a1 - a0))" "$((b1 - b0))" "$DURATION" "$(getconf CLK_TCK)" >>"$RATIOS" <<'EOF'
import re, sys
work, round_ = sys.argv[1], sys.argv[2]
a_ticks, b_ticks, secs, clk_tck = (int(v) for v in sys.argv[3:7])
def rate(side):
    text = open(f"{work}/{side}.txt").read()
    # A refused request is cheap: a ratio over refusals would flatter.
    if "Non-2xx" in text:
        sys.exit(f"round {round_}: {side.upper()} answered some requests with an error")
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
