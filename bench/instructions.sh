#!/usr/bin/env bash
# Instructions stsvend executes per cached-token request, counted by callgrind: a figure that
# another process's load cannot change (bench/run.sh's wall-clock figures can), for comparing two
# commits on a busy machine. Run it in each checkout and compare the last lines.
#
#   bench/instructions.sh            # 4000 requests after 200 to warm up
#   bench/instructions.sh 20000      # another N
#   INSTRUCTIONS_DUMP=cg.out bench/instructions.sh   # keep the profile (scripts/callgrind_costs.py)
#   BENCH_PER_USER=1 bench/instructions.sh           # the per-user path: one RS256 JWT, remembered
#
# The release binary, under callgrind, serves 200 requests on one keep-alive connection against
# bench-mock-sts (1 ms latency); then its counters are zeroed (`callgrind_control --zero`), it
# serves N more, and the count of that stretch alone (every thread: background work included)
# is divided by N. Start-up is left out on purpose: it spins for a time, not a count (quanta's
# clock calibration), so two runs of it differ by millions of instructions, which the earlier
# method (two processes, 200 and 4200 requests, subtracted) spread over the requests as
# ±800 a request. Needs valgrind (Debian's package), curl and python3.
#
# BENCH_PER_USER=1: `jwt` mode (RS256, the test keys' JWKS file), every request with the same
# JWT (signed by bench-drive, which asks once with it): the per-caller path with its token and
# verification remembered. Valgrind's CPU has no SHA extensions, so sha2 hashes the token in
# software here (~27,500 instructions for an RS256 token, `sha2::sha256::soft`): subtract its
# self cost (scripts/callgrind_costs.py self) to compare with the shared path; natively the
# whole remembered check is `cargo bench --bench hot_paths -- jwt/verify_rs256_remembered`.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4000}
if ((N < 100)); then
  echo "usage: bench/instructions.sh [N >= 100]" >&2
  exit 2
fi
# shellcheck source=bench/callgrind-lib.sh
source bench/callgrind-lib.sh
need_valgrind
build_release
TOKENS=$WORK/tokens.txt
: >"$TOKENS"
if [[ -n ${BENCH_PER_USER:-} ]]; then
  cargo build --release --locked --quiet --example bench-drive
  JWT_KEYS=$PWD/tests/fixtures/jwt # test keys, public: fine for a benchmark on loopback
  SERVER_ENV=(STSVEND_AUTH=jwt STSVEND_JWT_JWKS_FILE="$JWT_KEYS/jwks.json" STSVEND_JWT_ALGORITHMS=RS256
    STSVEND_JWT_ACCEPT_ANY_AUDIENCE=true)
  READY_PATH=/readyz
fi
start_under_callgrind
if [[ -n ${BENCH_PER_USER:-} ]]; then
  "$BIN/examples/bench-drive" subjects "$URL" "rs256:rsa-1:$JWT_KEYS/rsa_private.pem" 1 1 "$TOKENS" >/dev/null
fi

token_requests 200 "$TOKENS"
callgrind_control --zero "$SERVER_PID" >/dev/null
token_requests "$N" "$TOKENS"
callgrind_control --dump=measured "$SERVER_PID" >/dev/null
dump=$(ls "$WORK"/cg.out.* | head -n 1)
total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
# INSTRUCTIONS_DUMP=FILE keeps the profile, for scripts/callgrind_costs.py.
if [[ -n ${INSTRUCTIONS_DUMP:-} ]]; then cp "$dump" "$INSTRUCTIONS_DUMP"; fi
echo "instructions: $N requests $total"
echo "instructions per request: $((total / N)) ($(git rev-parse --short HEAD))"
