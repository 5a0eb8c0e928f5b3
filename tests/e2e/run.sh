#!/usr/bin/env bash
# End-to-end test: real @aliyun-sls/web-sts-plugin + web-track-browser against `stsvend dev`.
#
# Usage: tests/e2e/run.sh [path/to/stsvend]   (default: <repo>/target/release/stsvend)
# Needs: node >= 20 (npm), python3 (free-port pick), curl or node (readiness poll).
set -euo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$E2E_DIR/../.." && pwd)"
BIN="${1:-$REPO_ROOT/target/release/stsvend}"
READY_TIMEOUT_S=20
TEST_TIMEOUT_S=120

if [[ ! -x "$BIN" ]]; then
  echo "run.sh: stsvend binary not found or not executable: $BIN (build with: cargo build --release)" >&2
  exit 2
fi
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

if [[ ! -d "$E2E_DIR/node_modules" ]]; then
  (cd "$E2E_DIR" && npm ci --no-audit --no-fund)
fi

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BASE_URL="http://127.0.0.1:$PORT"
SERVER_LOG="$(mktemp "${TMPDIR:-/tmp}/stsvend-e2e.XXXXXX")"
SERVER_PID=""

cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 ]]; then
    echo "run.sh: FAILED (exit $rc); last stsvend output:" >&2
    tail -n 40 "$SERVER_LOG" >&2 || true
  fi
  rm -f "$SERVER_LOG"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

STSVEND_LISTEN="127.0.0.1:$PORT" STSVEND_ADMIN_LISTEN="127.0.0.1:0" "$BIN" dev >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

ready() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 1 "$BASE_URL/readyz" 2>/dev/null
  else
    node -e 'fetch(process.argv[1],{signal:AbortSignal.timeout(1000)}).then(r=>process.exit(r.status===200?0:1),()=>process.exit(1))' "$BASE_URL/readyz"
  fi
}

deadline=$((SECONDS + READY_TIMEOUT_S))
until ready; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "run.sh: stsvend exited before becoming ready" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "run.sh: stsvend not ready at $BASE_URL/readyz within ${READY_TIMEOUT_S}s" >&2
    exit 1
  fi
  sleep 0.2
done
echo "run.sh: stsvend ready at $BASE_URL (pid $SERVER_PID)"

cd "$REPO_ROOT"
STSVEND_URL="$BASE_URL" timeout "$TEST_TIMEOUT_S" node --test --test-timeout=30000 tests/e2e/
