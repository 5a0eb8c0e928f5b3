# Sourced by bench/instructions.sh, bench/misses.sh, scripts/symbol_order.sh and bench/pair.sh:
# the release binaries built as they ship, a work directory removed on exit, bench-mock-sts,
# `stsvend serve` under callgrind with bench/run.sh's settings, and token requests on one
# connection. Expects to run from the repository root with `set -euo pipefail`.

# need_valgrind: stops the calling script with one line when valgrind is missing.
need_valgrind() {
  command -v valgrind >/dev/null && return 0
  echo "$0: valgrind is not installed (apt-get install valgrind)" >&2
  exit 2
}

# stsvend on its own, as it ships: built in one command with the examples, its dependencies
# would get the examples' features too, and bench/symbol-order.txt would not match it.
build_release() {
  cargo build --release --locked --quiet --example bench-mock-sts
  cargo build --release --locked --quiet --bin stsvend
  BIN=$PWD/target/release
}

SERVER_ENV=()
READY_PATH=/get_sts_token # answered once the shared token is held; `/readyz` for other modes

# A work directory and the background processes to kill, both gone on exit.
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# start_under_callgrind [VALGRIND OPTION...]: bench-mock-sts (1 ms latency), then stsvend under
# callgrind (output in $WORK/cg.out) on a free port, with SERVER_ENV's settings (NAME=VALUE
# words) beside bench/run.sh's; sets SERVER_PID and URL (the token route) once READY_PATH
# answers, or fails after 60 s with the end of its log.
start_under_callgrind() {
  "$BIN/examples/bench-mock-sts" --latency-ms 1 >"$WORK/mock.out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do grep -q listening "$WORK/mock.out" && break; sleep 0.05; done
  local mock port
  mock=http://$(sed -n 's/^listening on //p' "$WORK/mock.out")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  URL=http://127.0.0.1:$port/get_sts_token
  env -i PATH="$PATH" HOME="$WORK" \
    ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tBenchmarkKey0000 ALIBABA_CLOUD_ACCESS_KEY_SECRET=BenchmarkSecret000000000000000 \
    STSVEND_LISTEN=127.0.0.1:"$port" STSVEND_ADMIN_LISTEN=127.0.0.1:0 STSVEND_STS_ENDPOINT="$mock/" \
    STSVEND_ROLE_ARN=acs:ram::1000000000000000:role/sls-web-track \
    STSVEND_LOGSTORE=bench-project/bench-logstore STSVEND_LOG_FORMAT=json \
    STSVEND_RATE_LIMIT_PER_MINUTE=6000000 STSVEND_RATE_LIMIT_BURST=1000000 "${SERVER_ENV[@]}" \
    valgrind --tool=callgrind "$@" --callgrind-out-file="$WORK/cg.out" "$BIN/stsvend" serve \
    >/dev/null 2>"$WORK/stsvend.log" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port$READY_PATH" -o /dev/null && return 0
    sleep 0.1
  done
  echo "stsvend under valgrind did not answer within 60 s; its log:" >&2
  tail -n 20 "$WORK/stsvend.log" >&2
  return 1
}

# token_requests N TOKENS: N token requests to $URL on one keep-alive connection, each with the
# next JWT of the file TOKENS in turn (none for an empty file); fails on any answer but 200.
token_requests() {
  timeout 1200 python3 - "$URL" "$1" "$2" <<'PY'
import http.client, sys, urllib.parse
url, n = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2])
tokens = [line for line in open(sys.argv[3]).read().split("\n") if line]
connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
for i in range(n):
    headers = {"Authorization": "Bearer " + tokens[i % len(tokens)]} if tokens else {}
    connection.request("GET", "/get_sts_token", headers=headers)
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200, answer.status
PY
}
