#!/usr/bin/env bash
# Instructions stsvend executes per cached-token request, counted by callgrind: a figure that
# another process's load cannot change (bench/run.sh's wall-clock figures can), for comparing two
# commits on a busy machine. Run it in each checkout and compare the last lines.
#
#   bench/instructions.sh            # 200 and 4200 requests: (I(4200) - I(200)) / 4000
#   bench/instructions.sh 2200       # another N
#
# The release binary serves N requests on one keep-alive connection against bench-mock-sts (1 ms
# latency); start-up and background work cancel out in the difference. Needs valgrind
# (Debian's package), curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4200}
BASE_N=200
if ((N <= BASE_N)); then
  echo "usage: bench/instructions.sh [N > $BASE_N]" >&2
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

# count REQUESTS: instructions of one stsvend run that serves REQUESTS token requests.
count() {
  local requests=$1 work mock_pid server_pid port mock
  work=$(mktemp -d)
  "$BIN/examples/bench-mock-sts" --latency-ms 1 >"$work/mock.out" 2>&1 &
  mock_pid=$!
  for _ in $(seq 100); do grep -q listening "$work/mock.out" && break; sleep 0.05; done
  mock=http://$(sed -n 's/^listening on //p' "$work/mock.out")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  env -i PATH="$PATH" HOME="$work" \
    ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tBenchmarkKey0000 ALIBABA_CLOUD_ACCESS_KEY_SECRET=BenchmarkSecret000000000000000 \
    STSVEND_LISTEN=127.0.0.1:"$port" STSVEND_ADMIN_LISTEN=127.0.0.1:0 STSVEND_STS_ENDPOINT="$mock/" \
    STSVEND_ROLE_ARN=acs:ram::1000000000000000:role/sls-web-track \
    STSVEND_LOGSTORE=bench-project/bench-logstore STSVEND_LOG_FORMAT=json \
    STSVEND_RATE_LIMIT_PER_MINUTE=6000000 STSVEND_RATE_LIMIT_BURST=1000000 \
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" "$BIN/stsvend" serve \
    >/dev/null 2>"$work/stsvend.log" &
  server_pid=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/get_sts_token" -o /dev/null && break
    sleep 0.1
  done
  timeout 600 python3 - "$port" "$requests" <<'PY'
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
for _ in range(n):
    connection.request("GET", "/get_sts_token")
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200, answer.status
PY
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  kill "$mock_pid"
  wait "$mock_pid" 2>/dev/null || true
  awk '/^(summary|totals):/ {print $2; exit}' "$work/callgrind.out"
  rm -rf "$work"
}

base=$(count "$BASE_N")
total=$(count "$N")
echo "instructions: $BASE_N requests $base, $N requests $total"
echo "instructions per request: $(((total - base) / (N - BASE_N))) ($(git rev-parse --short HEAD))"
