#!/usr/bin/env bash
# Instructions stsvend executes per cached-token request, counted by callgrind: a figure that
# another process's load cannot change (bench/run.sh's wall-clock figures can), for comparing two
# commits on a busy machine. Run it in each checkout and compare the last lines.
#
#   bench/instructions.sh            # 4000 requests after 200 to warm up
#   bench/instructions.sh 20000      # another N
#
# The release binary, under callgrind, serves 200 requests on one keep-alive connection against
# bench-mock-sts (1 ms latency); then its counters are zeroed (`callgrind_control --zero`), it
# serves N more, and the count of that stretch alone (every thread: background work included)
# is divided by N. Start-up is left out on purpose: it spins for a time, not a count (quanta's
# clock calibration), so two runs of it differ by millions of instructions, which the earlier
# method (two processes, 200 and 4200 requests, subtracted) spread over the requests as
# ±800 a request. Needs valgrind (Debian's package), curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4000}
if ((N < 100)); then
  echo "usage: bench/instructions.sh [N >= 100]" >&2
  exit 2
fi
command -v valgrind >/dev/null || {
  echo "bench/instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2
  exit 2
}
cargo build --release --locked --quiet --example bench-mock-sts
# stsvend on its own, as it ships: built in one command with the examples, its dependencies
# would get the examples' features too, and bench/symbol-order.txt would not match it.
cargo build --release --locked --quiet --bin stsvend
BIN=$PWD/target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/examples/bench-mock-sts" --latency-ms 1 >"$WORK/mock.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$WORK/mock.out" && break; sleep 0.05; done
mock=http://$(sed -n 's/^listening on //p' "$WORK/mock.out")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env -i PATH="$PATH" HOME="$WORK" \
  ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tBenchmarkKey0000 ALIBABA_CLOUD_ACCESS_KEY_SECRET=BenchmarkSecret000000000000000 \
  STSVEND_LISTEN=127.0.0.1:"$port" STSVEND_ADMIN_LISTEN=127.0.0.1:0 STSVEND_STS_ENDPOINT="$mock/" \
  STSVEND_ROLE_ARN=acs:ram::1000000000000000:role/sls-web-track \
  STSVEND_LOGSTORE=bench-project/bench-logstore STSVEND_LOG_FORMAT=json \
  STSVEND_RATE_LIMIT_PER_MINUTE=6000000 STSVEND_RATE_LIMIT_BURST=1000000 \
  valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" "$BIN/stsvend" serve \
  >/dev/null 2>"$WORK/stsvend.log" &
server_pid=$!
PIDS+=("$server_pid")
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$port/get_sts_token" -o /dev/null && break
  sleep 0.1
done

# requests N: N cached-token requests on one keep-alive connection.
requests() {
  timeout 600 python3 - "$port" "$1" <<'PY'
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for _ in range(n):
    connection.request("GET", "/get_sts_token")
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200, answer.status
PY
}
requests 200
callgrind_control --zero "$server_pid" >/dev/null
requests "$N"
callgrind_control --dump=measured "$server_pid" >/dev/null
dump=$(ls "$WORK"/callgrind.out.* | head -n 1)
total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
echo "instructions: $N requests $total"
echo "instructions per request: $((total / N)) ($(git rev-parse --short HEAD))"
