#!/usr/bin/env bash
# The load benchmark: stsvend side by side with the ceiling (a bare axum server) and Alibaba's
# sample token server (Flask, and gunicorn), all in one run on loopback, all against the same mock
# STS. Prints one table with ratios, then the scenarios (herd, per-user, start-up, STS outage).
#
#   bench/run.sh            # the full run, about 6 minutes
#   bench/run.sh --quick    # every step with tiny sizes, about 1 minute; checks the script works
#   bench/run.sh --main     # only the ceiling/stsvend rounds (no samples, no scenarios), ~2 minutes
#
# The servers run on CPU 0 and wrk (and the mock STS) on the others, so the load generator never
# takes the server's CPU and figures repeat; the ceiling and stsvend are measured in alternating
# rounds (ROUNDS, default 3) and the report takes medians, because the host's speed drifts; its
# ratios to the ceiling are medians of each round's ratio (bench/README.md says why).
#
# Sizes can be changed with BENCH_DURATION (seconds per load run, default 10),
# BENCH_CONNECTIONS (default "50 256"), BENCH_HERD (500), BENCH_SUBJECTS (10000),
# BENCH_STS_LATENCY_MS (30). The report is also written to target/bench/report.md.
# BENCH_ONLY=per-user runs just the per-user scenario (about 3 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export BENCH_DIR=$ROOT/bench

DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-"50 256"}
HERD=${BENCH_HERD:-500}
SUBJECTS=${BENCH_SUBJECTS:-10000}
STS_LATENCY_MS=${BENCH_STS_LATENCY_MS:-30}
HERD_STS_LATENCY_MS=200
BUDGET=100
WARMUP=2
ROUNDS=${BENCH_ROUNDS:-3}
MAIN_ONLY=
if [[ ${1:-} == --quick ]]; then
  DURATION=2 HERD=100 SUBJECTS=200 WARMUP=1 ROUNDS=1
elif [[ ${1:-} == --main ]]; then
  MAIN_ONLY=1
elif [[ -n ${1:-} ]]; then
  echo "usage: bench/run.sh [--quick | --main]" >&2
  exit 2
fi
# BENCH_ONLY=per-user runs only the per-user scenario (with its shared-token comparison).
BENCH_ONLY=${BENCH_ONLY:-}
if [[ -n $BENCH_ONLY && $BENCH_ONLY != per-user ]]; then
  echo "BENCH_ONLY: only per-user is known" >&2
  exit 2
fi

log() { printf '== %s\n' "$*" >&2; }

CPUS=$(nproc)
if ((CPUS >= 2)); then
  SERVER_CPUS=0 LOAD_CPUS=1-$((CPUS - 1)) WRK_THREADS=$((CPUS - 1))
else
  SERVER_CPUS=0 LOAD_CPUS=0 WRK_THREADS=1
fi
# Arrays, not functions: a backgrounded function runs in a subshell, and `$!` would then be the
# subshell's pid rather than the server's (whose memory is measured).
ON_SERVER=(taskset -c "$SERVER_CPUS")
ON_LOAD=(taskset -c "$LOAD_CPUS")

# --- Tools: wrk (and the usual process tools) from Debian, the sample's Python packages in a
# venv, release builds.
apt_install() {
  log "installing $* (Debian packages)"
  if [[ $(id -u) -eq 0 ]]; then apt-get install -y -qq "$@" >/dev/null; else sudo apt-get install -y -qq "$@" >/dev/null; fi
}
command -v wrk >/dev/null || apt_install wrk
command -v pgrep >/dev/null || apt_install procps
command -v taskset >/dev/null || apt_install util-linux
VENV=$BENCH_DIR/.venv
if ! "$VENV/bin/python" -c 'import flask, gunicorn, alibabacloud_sts20150401, alibabacloud_credentials' 2>/dev/null; then
  log "installing the sample's Python packages into bench/.venv"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$BENCH_DIR/sample/requirements.txt"
fi
log "building release binaries"
cargo build --release --locked --quiet --example bench-ceiling --example bench-mock-sts --example bench-drive
# stsvend on its own, as it ships: built in one command with the examples, its dependencies
# would get the examples' features too, and bench/symbol-order.txt would not match it.
cargo build --release --locked --quiet --bin stsvend
BIN=$ROOT/target/release
DRIVE=$BIN/examples/bench-drive

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_for URL [STATUS]: up to 15 s for URL to answer STATUS (default 200).
wait_for() {
  local code
  for _ in $(seq 150); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)
    [[ $code == "${2:-200}" ]] && return 0
    sleep 0.1
  done
  echo "no $2 from $1 within 15 s" >&2
  return 1
}

# The process and its children (gunicorn's workers).
tree() { echo "$1"; pgrep -P "$1" || true; }
reset_peak_rss() { for p in $(tree "$1"); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done; }
peak_rss_kib() {
  local total=0 kib
  for p in $(tree "$1"); do
    kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    total=$((total + ${kib:-0}))
  done
  echo "$total"
}

# Server CPU time (user + system, children included) in clock ticks, from /proc/PID/stat: less
# sensitive to a busy machine than requests per second, since it counts only the server's work.
cpu_ticks() {
  local total=0 ticks
  for p in $(tree "$1"); do
    # Fields 14 and 15 (utime, stime), counted after the ")" that ends the command name.
    ticks=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0)
    total=$((total + ${ticks:-0}))
  done
  echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# --- The mock STS every server calls.
"${ON_LOAD[@]}" "$BIN/examples/bench-mock-sts" --latency-ms "$STS_LATENCY_MS" >"$WORK/mock.out" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$WORK/mock.out" && break; sleep 0.05; done
MOCK=http://$(sed -n 's/^listening on //p' "$WORK/mock.out")
mock() { curl -sf -X POST "$MOCK/__$1" >/dev/null; }
mock_stats() { curl -sf "$MOCK/__stats"; }

# Clean environments: nothing from the caller's shell leaks into a server's configuration.
CLOUD_ENV=(ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tBenchmarkKey0000 ALIBABA_CLOUD_ACCESS_KEY_SECRET=BenchmarkSecret000000000000000)
ROLE=acs:ram::1000000000000000:role/sls-web-track
stsvend_env() { # PORT [EXTRA=VALUE...]
  local port=$1
  shift
  echo PATH="$PATH" HOME="$WORK" "${CLOUD_ENV[@]}" \
    STSVEND_LISTEN=127.0.0.1:"$port" STSVEND_ADMIN_LISTEN=127.0.0.1:0 \
    STSVEND_STS_ENDPOINT="$MOCK/" STSVEND_ROLE_ARN="$ROLE" \
    STSVEND_LOGSTORE=bench-project/bench-logstore STSVEND_LOG_FORMAT=json \
    STSVEND_RATE_LIMIT_PER_MINUTE=6000000 STSVEND_RATE_LIMIT_BURST=1000000 "$@"
}
# start_stsvend NAME PORT [EXTRA=VALUE...]: logs (audit lines included) go to a file, as in a
# container whose standard error is collected.
start_stsvend() {
  local name=$1 port=$2
  shift 2
  # shellcheck disable=SC2046
  "${ON_SERVER[@]}" env -i $(stsvend_env "$port" "$@") "$BIN/stsvend" serve >/dev/null 2>"$WORK/$name.log" &
  PIDS+=($!)
  LAST_PID=$!
}

ROWS=$WORK/rows.jsonl
SCENARIOS=$WORK/scenarios.jsonl
GUNICORN_WORKERS=5 # gunicorn's advice, 2 x cores + 1, for the two cores it would have alone
report() {
  mkdir -p target/bench
  touch "$SCENARIOS"
  python3 "$BENCH_DIR/report.py" "$ROWS" "$SCENARIOS" \
    "$(nproc)" "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
    "$(free -g | awk '/^Mem:/ {print $2}')" "$(rustc --version)" "$DURATION" "$GUNICORN_WORKERS" \
    "$SERVER_CPUS" "$LOAD_CPUS" "$ROUNDS" |
    tee target/bench/report.md
}
load() { # CONNECTIONS SECONDS URL [wrk options]: prints wrk's report line
  local conns=$1 seconds=$2 url=$3 line
  shift 3
  # Bounded: wrk can hang on a server that stops accepting; then the run counts as failed.
  line=$(timeout $((seconds + 20)) "${ON_LOAD[@]}" wrk -t"$WRK_THREADS" -c"$conns" -d"${seconds}s" --timeout 5s \
    -s "$BENCH_DIR/report.lua" "$@" "$url" | tail -n 1 || true)
  if [[ $line != '{'* ]]; then
    log "wrk did not finish against $url"
    line='{"requests":0,"duration_us":0,"socket_errors":0,"non_2xx":0,"p50_us":0,"p99_us":0,"hung":true}'
  fi
  echo "$line"
}

# measure NAME PID URL CONNECTIONS ROUND: a warm-up, then one measured wrk run.
measure() {
  local name=$1 pid=$2 url=$3 conns=$4 round=$5 result sts rss cpu
  load "$conns" "$WARMUP" "$url" >/dev/null 2>&1 || true
  mock reset
  reset_peak_rss "$pid"
  log "$name, $conns connections, ${DURATION}s (round $round)"
  cpu=$(cpu_ticks "$pid")
  result=$(load "$conns" "$DURATION" "$url")
  cpu=$(($(cpu_ticks "$pid") - cpu))
  sts=$(mock_stats)
  rss=$(peak_rss_kib "$pid")
  printf '{"server":"%s","connections":%s,"round":%s,"wrk":%s,"sts":%s,"peak_rss_kib":%s,"cpu_ms":%s}\n' \
    "$name" "$conns" "$round" "$result" "$sts" "$rss" "$((cpu * 1000 / CLK_TCK))" >>"$ROWS"
}

if [[ -z $BENCH_ONLY ]]; then
# --- Steady state: the four servers, one at a time, each at every connection count.
PORT=$(free_port)
start_stsvend stsvend "$PORT"
STSVEND_PID=$LAST_PID
STSVEND_URL=http://127.0.0.1:$PORT/get_sts_token
wait_for "$STSVEND_URL"
curl -sf "$STSVEND_URL" -o "$WORK/body.json"
# The same service with its audit lines switched off, to show what one line per request costs.
PORT=$(free_port)
start_stsvend stsvend-no-audit "$PORT" RUST_LOG=stsvend::audit=off,info
QUIET_PID=$LAST_PID
QUIET_URL=http://127.0.0.1:$PORT/get_sts_token
wait_for "$QUIET_URL"

PORT=$(free_port)
"${ON_SERVER[@]}" "$BIN/examples/bench-ceiling" "$WORK/body.json" --listen 127.0.0.1:"$PORT" >/dev/null &
PIDS+=($!)
CEILING_PID=$!
CEILING_URL=http://127.0.0.1:$PORT/get_sts_token
wait_for "$CEILING_URL"

for conns in $CONNECTIONS; do
  for round in $(seq "$ROUNDS"); do
    measure ceiling "$CEILING_PID" "$CEILING_URL" "$conns" "$round"
    measure stsvend "$STSVEND_PID" "$STSVEND_URL" "$conns" "$round"
    measure stsvend-no-audit "$QUIET_PID" "$QUIET_URL" "$conns" "$round"
  done
done
kill "$CEILING_PID" "$QUIET_PID" 2>/dev/null || true
if [[ -n $MAIN_ONLY ]]; then
  report
  exit 0
fi

# The samples last, one at a time, each killed (SIGKILL, children too) right after its runs: a
# sample left running keeps working through its queued requests, taking the server CPU and
# calling STS long after its load has stopped.
stop() {
  pkill -KILL -P "$1" 2>/dev/null || true
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  sleep 1
}
SAMPLE_ENV=(PATH="$PATH" HOME="$WORK" "${CLOUD_ENV[@]}" ALIBABA_CLOUD_ROLE_ARN="$ROLE"
  BENCH_STS_ENDPOINT="${MOCK#http://}")
PORT=$(free_port)
(cd "$BENCH_DIR/sample" && exec taskset -c "$SERVER_CPUS" env -i "${SAMPLE_ENV[@]}" "$VENV/bin/flask" --app app run --port "$PORT" >"$WORK/flask.log" 2>&1) &
PIDS+=($!)
FLASK_PID=$!
FLASK_URL=http://127.0.0.1:$PORT/get_sts_token
wait_for "$FLASK_URL"
for conns in $CONNECTIONS; do measure sample-flask "$FLASK_PID" "$FLASK_URL" "$conns" 1; done
stop "$FLASK_PID"

PORT=$(free_port)
"${ON_SERVER[@]}" env -i "${SAMPLE_ENV[@]}" "$VENV/bin/gunicorn" --chdir "$BENCH_DIR/sample" -k gthread \
  --workers "$GUNICORN_WORKERS" --threads 8 --bind 127.0.0.1:"$PORT" app:app >"$WORK/gunicorn.log" 2>&1 &
PIDS+=($!)
GUNICORN_PID=$!
GUNICORN_URL=http://127.0.0.1:$PORT/get_sts_token
wait_for "$GUNICORN_URL"
for conns in $CONNECTIONS; do measure sample-gunicorn "$GUNICORN_PID" "$GUNICORN_URL" "$conns" 1; done
stop "$GUNICORN_PID"


fi # BENCH_ONLY
scenario() { printf '{"scenario":"%s",%s}\n' "$1" "$2" >>"$SCENARIOS"; }
if [[ -z $BENCH_ONLY ]]; then

# --- STS outage: the token in hand expires 20 s after issue (lifetime 620 s, 600 s kept back),
# so the refresher tries to renew it, and fails, while wrk runs; clients must not notice.
kill "$STSVEND_PID"
mock lifetime?s=620
PORT=$(free_port)
start_stsvend outage "$PORT"
URL=http://127.0.0.1:$PORT/get_sts_token
wait_for "$URL"
mock down
mock reset
log "STS outage, 50 connections, ${DURATION}s"
result=$(load 50 "$DURATION" "$URL")
scenario outage "\"wrk\":$result,\"sts\":$(mock_stats)"
mock up
mock lifetime?s=0
kill "$LAST_PID"

# --- Herd: a cold start with a slow STS, and every client arriving at once.
mock latency?ms=$HERD_STS_LATENCY_MS
mock reset
PORT=$(free_port)
start_stsvend herd "$PORT"
# Only a TCP connect: the first HTTP request must be the herd's.
for _ in $(seq 2000); do (: >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.005; done
log "herd: $HERD concurrent first requests, STS latency ${HERD_STS_LATENCY_MS} ms"
result=$("${ON_LOAD[@]}" "$DRIVE" herd "http://127.0.0.1:$PORT/get_sts_token" "$HERD")
scenario herd "\"clients\":$HERD,\"sts_latency_ms\":$HERD_STS_LATENCY_MS,\"drive\":$result,\"sts\":$(mock_stats)"
kill "$LAST_PID"
mock latency?ms=$STS_LATENCY_MS

fi # BENCH_ONLY

# --- Per-user tokens (`jwt` mode, RS256, keys from a JWKS file): distinct JWT subjects, each
# costing one AssumeRole within the budget. Then the same tokens again, cached (each JWT
# verified once, then remembered), in alternating rounds with a shared-token server (`none`
# mode) started beside it: the server CPU per request of each, from /proc/PID/stat.
JWT_KEYS=$ROOT/tests/fixtures/jwt # test keys, public: fine for a benchmark on loopback
PORT=$(free_port)
# Every subject arrives from one loopback address: lift the per-network limit on new tokens (60
# a minute by default), or it, not the AssumeRole budget, would set the pace.
start_stsvend per-user "$PORT" STSVEND_AUTH=jwt STSVEND_JWT_JWKS_FILE="$JWT_KEYS/jwks.json" \
  STSVEND_JWT_ALGORITHMS=RS256 STSVEND_JWT_ACCEPT_ANY_AUDIENCE=true STSVEND_STS_BUDGET_PER_SECOND="$BUDGET" \
  STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE=1000000
PER_USER_PID=$LAST_PID
PER_USER_URL=http://127.0.0.1:$PORT/get_sts_token
wait_for "http://127.0.0.1:$PORT/readyz"
PORT=$(free_port)
start_stsvend shared "$PORT"
SHARED_PID=$LAST_PID
SHARED_URL=http://127.0.0.1:$PORT/get_sts_token
wait_for "$SHARED_URL"
mock reset
log "per-user: $SUBJECTS distinct subjects (RS256), budget $BUDGET AssumeRole/s"
result=$("${ON_LOAD[@]}" "$DRIVE" subjects "$PER_USER_URL" "rs256:rsa-1:$JWT_KEYS/rsa_private.pem" \
  "$SUBJECTS" 64 "$WORK/tokens.txt")
first=$(mock_stats)
mock reset
# cpu_measure NAME PID URL ROUND [wrk options]: a warm-up, then one measured run at 50
# connections with the server's CPU time over it.
cpu_measure() {
  local name=$1 pid=$2 url=$3 round=$4 before result after
  shift 4
  timeout $((WARMUP + 20)) "${ON_LOAD[@]}" wrk -t"$WRK_THREADS" -c50 -d"${WARMUP}s" "$@" "$url" >/dev/null 2>&1 || true
  log "$name, 50 connections, ${DURATION}s (round $round)"
  before=$(cpu_ticks "$pid")
  result=$(BENCH_TOKENS=$WORK/tokens.txt load 50 "$DURATION" "$url" "$@")
  after=$(cpu_ticks "$pid")
  printf '{"server":"%s","round":%s,"wrk":%s,"cpu_ticks":%s}\n' "$name" "$round" "$result" $((after - before)) >>"$WORK/per-user-cpu.jsonl"
}
: >"$WORK/per-user-cpu.jsonl"
for round in $(seq "$ROUNDS"); do
  cpu_measure per-user-cached "$PER_USER_PID" "$PER_USER_URL" "$round" -s "$BENCH_DIR/replay.lua"
  cpu_measure shared "$SHARED_PID" "$SHARED_URL" "$round"
done
scenario per-user "\"subjects\":$SUBJECTS,\"budget\":$BUDGET,\"drive\":$result,\"sts\":$first,\"cached_sts\":$(mock_stats),\"clk_tck\":$(getconf CLK_TCK),\"cpu\":[$(paste -sd, "$WORK/per-user-cpu.jsonl")]"
kill "$PER_USER_PID" "$SHARED_PID"

if [[ -z $BENCH_ONLY ]]; then
# --- Start-up: process start to the first 200, then resident memory after an idle second.
PORT=$(free_port)
log "start-up"
# shellcheck disable=SC2046
result=$("${ON_SERVER[@]}" env -i $(stsvend_env "$PORT") "$DRIVE" startup "http://127.0.0.1:$PORT/get_sts_token" \
  "$BIN/stsvend" serve 2>"$WORK/startup.log")
scenario startup "\"sts_latency_ms\":$STS_LATENCY_MS,\"drive\":$result"

fi # BENCH_ONLY

# --- The report.
report
