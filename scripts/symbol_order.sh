#!/usr/bin/env bash
# Regenerates bench/symbol-order.txt, the order in which the linker lays out the functions of
# the release `stsvend` (build.rs hands it to rust-lld on x86_64 Linux glibc builds): first every
# function that runs while cached tokens are served, then the ones only start-up and shutdown run.
# Linked together, they fill a few hundred pages of `.text` instead of being spread over all of
# it, and the kernel maps (and keeps resident) only that (README, Performance, "Round 4").
#
#   scripts/symbol_order.sh            # rewrite bench/symbol-order.txt (about 3 minutes)
#   scripts/symbol_order.sh --check    # fail if the file no longer matches the release build,
#                                      # or the build did not lay its functions out by it
#
# The names carry crate hashes, which change with any dependency, feature or toolchain update:
# a stale list is harmless (names the binary lacks are skipped) but stops paying, so CI runs
# --check. Needs valgrind (Debian's package) for the regeneration, binutils' nm for both.
set -euo pipefail
cd "$(dirname "$0")/.."
LIST=bench/symbol-order.txt
# Below this share of the list found in the binary, the layout has gone stale: 8 % of the names
# missing (one change to the connection task's type) cost 2 MB of resident code.
MIN_FOUND_PERCENT=95

# The exact build the service ships: the binary on its own, since building examples in the same
# command unifies other features into the dependencies (and so changes their hashes).
build() {
  cargo build --release --locked --quiet --bin stsvend
}

defined_names() { nm --defined-only "$1" | awk '$2 ~ /^[tTwW]$/ {print $3}' | sort -u; }

if [[ ${1:-} == --check ]]; then
  build
  total=$(grep -c . "$LIST")
  found=$(comm -12 <(sort -u "$LIST") <(defined_names target/release/stsvend) | wc -l)
  percent=$((found * 100 / total))
  echo "symbol order: $found of $total names found in target/release/stsvend ($percent %)"
  if ((percent < MIN_FOUND_PERCENT)); then
    echo "bench/symbol-order.txt is stale (below $MIN_FOUND_PERCENT %): run scripts/symbol_order.sh" >&2
    exit 1
  fi
  # Found is not applied: a build whose build script could not run `rustc --version` links
  # without the list, and its listed functions lie spread over all of `.text` (8.6 MB instead
  # of 1.7; twice the resident code, which went unseen in a benchmark once).
  read -r span bytes < <(nm --defined-only -S target/release/stsvend | python3 -c '
import sys
wanted = set(open(sys.argv[1]).read().split())
spans = [(int(p[0], 16), int(p[1], 16)) for p in map(str.split, sys.stdin)
         if len(p) == 4 and p[2] in "tTwW" and p[3] in wanted]
low, high = min(a for a, _ in spans), max(a + s for a, s in spans)
print(high - low, sum(s for _, s in spans))' "$LIST")
  echo "symbol order: the listed functions span $((span / 1024)) KiB of .text for $((bytes / 1024)) KiB of code"
  if ((span > bytes * 3 / 2)); then
    echo "target/release/stsvend was linked without bench/symbol-order.txt: see build.rs's symbol_order (rust-lld, rustc 1.90 or later)" >&2
    exit 1
  fi
  exit 0
elif [[ -n ${1:-} ]]; then
  echo "usage: scripts/symbol_order.sh [--check]" >&2
  exit 2
fi

# shellcheck source=bench/callgrind-lib.sh
source bench/callgrind-lib.sh
need_valgrind
build_release
start_under_callgrind --demangle=no --dump-instr=no --compress-strings=no
# Part 1 (cg.out.1): start-up and the first (uncached) token.
callgrind_control --dump=startup "$SERVER_PID" >/dev/null
for _ in $(seq 50); do curl -sf "$URL" -o /dev/null; done
if command -v wrk >/dev/null; then
  timeout 60 wrk -t1 -c256 -d4s --timeout 10s "$URL" >/dev/null || true
fi
# Part 2 (cg.out.2): serving cached tokens, many connections. The rest (cg.out): shutdown.
callgrind_control --dump=serving "$SERVER_PID" >/dev/null
kill -TERM "$SERVER_PID"
# The final dump (cg.out: shutdown) is written as it exits.
for _ in $(seq 300); do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done

# Every function a part ran, most instructions first: callgrind's `fn=` lines name a function,
# the cost lines after it (`position instructions`) add up to its own instructions.
ran() {
  awk '/^fn=/ { name = $0; sub(/^fn=(\([0-9]+\) ?)?/, "", name); if (name == "") name = id[$1]; else { split($0, p, " "); id[p[1]] = name }; cur = name; next }
       /^(cfn|cfi|cfl|cob|calls)=/ { skip = ($1 ~ /^calls=/); next }
       /^[0-9*+-]/ { if (skip) { skip = 0; next } if (cur != "") cost[cur] += $2 }
       END { for (n in cost) if (cost[n] > 0) print cost[n], n }' "$@" | sort -k1,1nr | awk '{print $2}'
}
defined_names "$BIN/stsvend" >"$WORK/defined"
keep() { awk 'NR == FNR { d[$0] = 1; next } ($0 in d) && !seen[$0]++' "$WORK/defined" -; }
{
  ran "$WORK/cg.out.2"
  ran "$WORK/cg.out.1"
  ran "$WORK/cg.out"
} | keep >"$LIST.new"
mv "$LIST.new" "$LIST"
echo "wrote $LIST: $(wc -l <"$LIST") functions, serving ones first"
