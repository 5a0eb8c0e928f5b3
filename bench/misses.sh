#!/usr/bin/env bash
# Cache misses per cached-token request, counted by callgrind's cache simulation: where the
# per-user path reads memory that a 1 MiB cache (this VM's L2) no longer holds once many
# subjects are in use, beside the shared path. A count, like bench/instructions.sh's, so it
# repeats on a busy machine; it models no TLB and no hardware prefetcher, so it says which reads
# miss, not what each costs (README, Performance, "Round 11").
#
#   bench/misses.sh                        # 2000 subjects, 4000 requests a side
#   BENCH_SUBJECTS=500 bench/misses.sh 8000
#
# Each server runs alone under `valgrind --tool=callgrind --cache-sim=yes` (64 KiB L1 data, and a
# 1 MiB 16-way last level standing for the L2): first the shared token (`none` mode), then
# bench/run.sh's per-user scenario (`jwt`, RS256 from the test keys' JWKS file), whose subjects
# bench-drive asks for once each. Every JWT is asked for once more to warm up, the counters are
# zeroed, and N requests cycle through the JWTs on one keep-alive connection. Prints per request:
# instructions, L1 and last-level read misses for each side, then the per-user path's last-level
# read misses by function (self). About 5 minutes. Needs valgrind, curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4000}
SUBJECTS=${BENCH_SUBJECTS:-2000}
if ((N < 100 || SUBJECTS < 1)); then
  echo "usage: [BENCH_SUBJECTS=S >= 1] bench/misses.sh [N >= 100]" >&2
  exit 2
fi
# shellcheck source=bench/callgrind-lib.sh
source bench/callgrind-lib.sh
need_valgrind
build_release
cargo build --release --locked --quiet --example bench-drive
JWT_KEYS=$PWD/tests/fixtures/jwt # test keys, public: fine for a benchmark on loopback
CACHES=(--cache-sim=yes --D1=65536,8,64 --LL=1048576,16,64)

# measure NAME TOKENS WARM-UP: the running server's counts for N requests, kept as $WORK/NAME.out.
measure() {
  token_requests "$3" "$2"
  callgrind_control --zero "$SERVER_PID" >/dev/null
  token_requests "$N" "$2"
  callgrind_control --dump "$SERVER_PID" >/dev/null
  for _ in $(seq 100); do
    compgen -G "$WORK/cg.out.*" >/dev/null && break
    sleep 0.1
  done
  sleep 1 # the dump's file appears before it is complete
  mv "$WORK"/cg.out.* "$WORK/$1.out"
  kill "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
}

: >"$WORK/none.txt"
start_under_callgrind "${CACHES[@]}"
measure shared "$WORK/none.txt" 200

SERVER_ENV=(STSVEND_AUTH=jwt STSVEND_JWT_JWKS_FILE="$JWT_KEYS/jwks.json" STSVEND_JWT_ALGORITHMS=RS256
  STSVEND_JWT_ACCEPT_ANY_AUDIENCE=true STSVEND_STS_BUDGET_PER_SECOND=100
  STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE=1000000)
READY_PATH=/readyz
start_under_callgrind "${CACHES[@]}"
timeout 1200 "$BIN/examples/bench-drive" subjects "$URL" "rs256:rsa-1:$JWT_KEYS/rsa_private.pem" \
  "$SUBJECTS" 32 "$WORK/tokens.txt" >/dev/null
measure per-user "$WORK/tokens.txt" "$SUBJECTS"

python3 - "$WORK" "$N" "$SUBJECTS" <<'PY'
import sys
work, n, subjects = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def totals(name):
    text = open(f"{work}/{name}.out").read()
    events = text.split("\nevents:", 1)[1].split("\n", 1)[0].split()
    values = text.split("\nsummary:", 1)[1].split("\n", 1)[0].split()
    return {e: int(v) / n for e, v in zip(events, values)}
print(f"per request, {n} requests; per-user: {subjects} subjects cycled; last level: 1 MiB")
print(f"{'':10}{'instructions':>14}{'L1 read misses':>16}{'LL read misses':>16}")
for name in ("shared", "per-user"):
    t = totals(name)
    print(f"{name:10}{t['Ir']:14.0f}{t['D1mr']:16.1f}{t['DLmr']:16.1f}")
PY
echo "per-user last-level read misses a request, by function (self):"
python3 scripts/callgrind_costs.py self "$WORK/per-user.out" "$N" DLmr | head -16
