#!/usr/bin/env bash
# Instructions stsvend executes per cached-token request, counted by callgrind: a figure that
# another process's load cannot change (bench/run.sh's wall-clock figures can), for comparing two
# commits on a busy machine. Run it in each checkout and compare the last lines.
#
#   bench/instructions.sh            # 4000 requests after 200 to warm up
#   bench/instructions.sh 20000      # another N
#   INSTRUCTIONS_DUMP=cg.out bench/instructions.sh   # keep the profile (scripts/callgrind_costs.py)
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
# shellcheck source=bench/callgrind-lib.sh
source bench/callgrind-lib.sh
build_release
start_under_callgrind

# requests N: N cached-token requests on one keep-alive connection.
requests() {
  timeout 600 python3 - "$URL" "$1" <<'PY'
import http.client, sys, urllib.parse
url, n = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2])
connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
for _ in range(n):
    connection.request("GET", "/get_sts_token")
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 200, answer.status
PY
}
requests 200
callgrind_control --zero "$SERVER_PID" >/dev/null
requests "$N"
callgrind_control --dump=measured "$SERVER_PID" >/dev/null
dump=$(ls "$WORK"/cg.out.* | head -n 1)
total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
# INSTRUCTIONS_DUMP=FILE keeps the profile, for scripts/callgrind_costs.py.
if [[ -n ${INSTRUCTIONS_DUMP:-} ]]; then cp "$dump" "$INSTRUCTIONS_DUMP"; fi
echo "instructions: $N requests $total"
echo "instructions per request: $((total / N)) ($(git rev-parse --short HEAD))"
