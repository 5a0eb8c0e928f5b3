#!/usr/bin/env bash
# Runs the property tests of tests/fuzz (issue 8, point 2) far longer than `cargo test` does:
# release build, PROPTEST_CASES inputs per property (20000 by default; the router property runs a
# quarter of that), each property stopped after FUZZ_SECONDS seconds (120 by default) whatever
# it has reached. Ends with one line per property: how many inputs it ran, and in how long.
#
#   scripts/fuzz.sh                  # 20000 cases, at most 120 s per property
#   scripts/fuzz.sh 100000 600       # more of both
#
# A failure prints proptest's minimal failing input; keep it as a named test in
# tests/fuzz/regressions.rs once it is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

cases="${1:-${PROPTEST_CASES:-20000}}"
seconds="${2:-${FUZZ_SECONDS:-120}}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# Build first, so the time bound below is spent on inputs, not on compiling.
cargo test --release --test fuzz --no-run

# The properties run two at a time; the outer bound only catches a hung input.
properties="$(cargo test --release --test fuzz -- --list 2>/dev/null | grep -c ': test$')"
bound=$(( (properties + 1) / 2 * seconds + 300 ))
status=0
PROPTEST_CASES="$cases" FUZZ_SECONDS="$seconds" timeout "$bound" \
  cargo test --release --test fuzz -- --nocapture --test-threads 2 2>&1 | tee "$log" || status=$?

echo
echo "== inputs per property (PROPTEST_CASES=$cases, FUZZ_SECONDS=$seconds) =="
grep '^fuzz: ' "$log" | sort || true
exit "$status"
