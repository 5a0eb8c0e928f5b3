#!/usr/bin/env bash
# musl's allocator against mimalloc, for the image's binary: two x86_64-unknown-linux-musl
# release builds of the production binary (--no-default-features), one with the `mimalloc`
# feature, side by side in one run with bench/run.sh's method: servers on CPU 0, wrk and the
# mock STS on the others, a warm-up before each measured run, the two measured in alternating
# rounds, medians reported. Prints one Markdown table (requests/s, p50, p99, peak RSS per
# connection count, and resident memory after start-up).
#
#   bench/alloc.sh            # 10 s per run, 50 and 256 connections, 3 rounds
#   bench/alloc.sh --quick    # 2 s per run, 1 round: checks the script works
#
# BENCH_DURATION, BENCH_CONNECTIONS and BENCH_ROUNDS change the sizes. The mock STS is a few
# lines of Python: tokens are cached, so the steady state never reaches it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BENCH_DIR=$ROOT/bench

DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-"50 256"}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=2
if [[ ${1:-} == --quick ]]; then
  DURATION=2 ROUNDS=1 WARMUP=1
elif [[ -n ${1:-} ]]; then
  echo "usage: bench/alloc.sh [--quick]" >&2
  exit 2
fi
log() { printf '== %s\n' "$*" >&2; }

CPUS=$(nproc)
if ((CPUS >= 2)); then
  SERVER_CPUS=0 LOAD_CPUS=1-$((CPUS - 1)) WRK_THREADS=$((CPUS - 1))
else
  SERVER_CPUS=0 LOAD_CPUS=0 WRK_THREADS=1
fi
ON_SERVER=(taskset -c "$SERVER_CPUS")
ON_LOAD=(taskset -c "$LOAD_CPUS")
command -v wrk >/dev/null || { echo "bench/alloc.sh needs wrk (apt-get install wrk)" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# One target directory: the second build recompiles only stsvend and mimalloc's C.
TARGET=x86_64-unknown-linux-musl
for variant in musl mimalloc; do
  features=()
  [[ $variant == mimalloc ]] && features=(--features mimalloc)
  log "building the $TARGET production binary ($variant)"
  cargo build --release --locked --quiet --target "$TARGET" --no-default-features "${features[@]}" --bin stsvend
  cp "target/$TARGET/release/stsvend" "$WORK/stsvend-$variant"
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {
  for _ in $(seq 150); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" || true) == 200 ]] && return 0
    sleep 0.1
  done
  echo "no 200 from $1 within 15 s" >&2
  return 1
}
reset_peak_rss() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }
rss_kib() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }

# --- The mock STS: every AssumeRole answered at once with an hour-long token.
MOCK_PORT=$(free_port)
"${ON_LOAD[@]}" python3 - "$MOCK_PORT" >"$WORK/mock.log" 2>&1 <<'PY' &
import datetime, http.server, json, sys
class Sts(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        body = json.dumps({
            "RequestId": "ALLOC-BENCH",
            "AssumedRoleUser": {"Arn": "acs:ram::1000000000000000:role/sls-web-track/bench",
                                "AssumedRoleId": "300000000000000000:bench"},
            "Credentials": {"AccessKeyId": "STS.ALLOCBENCH", "AccessKeySecret": "bench-secret",
                            "SecurityToken": "bench-token",
                            "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sts).serve_forever()
PY
PIDS+=($!)

start() { # VARIANT PORT: starts the server on CPU 0, as bench/run.sh does
  "${ON_SERVER[@]}" env -i PATH="$PATH" HOME="$WORK" \
    ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tBenchmarkKey0000 ALIBABA_CLOUD_ACCESS_KEY_SECRET=BenchmarkSecret000000000000000 \
    STSVEND_LISTEN=127.0.0.1:"$2" STSVEND_ADMIN_LISTEN=127.0.0.1:0 \
    STSVEND_STS_ENDPOINT=http://127.0.0.1:"$MOCK_PORT"/ STSVEND_ROLE_ARN=acs:ram::1000000000000000:role/sls-web-track \
    STSVEND_LOGSTORE=bench-project/bench-logstore STSVEND_LOG_FORMAT=json \
    STSVEND_RATE_LIMIT_PER_MINUTE=6000000 STSVEND_RATE_LIMIT_BURST=1000000 \
    "$WORK/stsvend-$1" serve >/dev/null 2>"$WORK/$1.log" &
  PIDS+=($!)
  LAST_PID=$!
}

ROWS=$WORK/rows.jsonl
declare -A PID_OF URL_OF
for variant in musl mimalloc; do
  port=$(free_port)
  start "$variant" "$port"
  PID_OF[$variant]=$LAST_PID
  URL_OF[$variant]=http://127.0.0.1:$port/get_sts_token
  wait_for "${URL_OF[$variant]}"
  sleep 1
  printf '{"variant":"%s","idle_rss_kib":%s}\n' "$variant" "$(rss_kib "$LAST_PID" VmRSS)" >>"$WORK/idle.jsonl"
done

load() { # CONNECTIONS SECONDS URL
  local line
  line=$(timeout $(($2 + 20)) "${ON_LOAD[@]}" wrk -t"$WRK_THREADS" -c"$1" -d"$2s" --timeout 5s \
    -s "$BENCH_DIR/report.lua" "$3" | tail -n 1 || true)
  [[ $line == '{'* ]] || line='{"requests":0,"duration_us":1,"socket_errors":0,"non_2xx":0,"p50_us":0,"p99_us":0}'
  echo "$line"
}
for conns in $CONNECTIONS; do
  for round in $(seq "$ROUNDS"); do
    for variant in musl mimalloc; do
      pid=${PID_OF[$variant]} url=${URL_OF[$variant]}
      load "$conns" "$WARMUP" "$url" >/dev/null
      reset_peak_rss "$pid"
      log "$variant, $conns connections, ${DURATION}s (round $round)"
      result=$(load "$conns" "$DURATION" "$url")
      printf '{"variant":"%s","connections":%s,"wrk":%s,"peak_rss_kib":%s}\n' \
        "$variant" "$conns" "$result" "$(rss_kib "$pid" VmHWM)" >>"$ROWS"
    done
  done
done

python3 - "$ROWS" "$WORK/idle.jsonl" "$WORK"/stsvend-musl "$WORK"/stsvend-mimalloc <<'PY'
import json, os, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
idle = {d["variant"]: d["idle_rss_kib"] for d in map(json.loads, open(sys.argv[2]))}
sizes = {"musl": os.path.getsize(sys.argv[3]), "mimalloc": os.path.getsize(sys.argv[4])}
print("| allocator | connections | requests/s | p50 ms | p99 ms | errors | peak RSS MiB |")
print("|---|---:|---:|---:|---:|---:|---:|")
for conns in sorted({r["connections"] for r in rows}):
    for variant in ("musl", "mimalloc"):
        runs = [r for r in rows if r["variant"] == variant and r["connections"] == conns]
        med = lambda f: statistics.median(f(r) for r in runs)
        rps = med(lambda r: r["wrk"]["requests"] / (r["wrk"]["duration_us"] / 1e6))
        errors = sum(r["wrk"]["socket_errors"] + r["wrk"]["non_2xx"] for r in runs)
        print(f"| {variant} | {conns} | {rps:,.0f} | {med(lambda r: r['wrk']['p50_us']) / 1000:.2f} | "
              f"{med(lambda r: r['wrk']['p99_us']) / 1000:.2f} | {errors} | {med(lambda r: r['peak_rss_kib']) / 1024:.1f} |")
for variant in ("musl", "mimalloc"):
    print(f"\n{variant}: resident after start-up {idle[variant] / 1024:.1f} MiB; binary {sizes[variant]:,} bytes (unstripped)")
PY
