#!/usr/bin/env bash
# Browser end-to-end: examples/browser (real @aliyun-sls/web-track-browser + web-sts-plugin) in
# Debian's headless Chromium, driven by playwright-core, against a fresh `stsvend dev`.
#
# Usage: tests/browser/run.sh
# Does: apt-get install chromium if /usr/bin/chromium is missing; `npm ci` here; vendors the
# example's browser builds (examples/browser/vendor.sh); `cargo build`; starts `stsvend dev` on a
# free loopback port, plus a second one with STSVEND_CORS_ORIGINS=<the test's static server origin>
# for the cross-origin checks; runs browser.test.mjs; always stops both servers.
# Artifacts: target/browser-artifacts/dev-logs.png (the /dev/logs page), example.png,
# example-denied.png, example-cors-on.png, example-cors-off.png, failure.png (only on failure).
# Never downloads a browser (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1, executablePath /usr/bin/chromium).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
READY_TIMEOUT_S=20
TEST_TIMEOUT_S=120
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

# 1. Chromium from Debian's packages.
if [[ ! -x /usr/bin/chromium ]]; then
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then SUDO="sudo -n"; fi
  echo "run.sh: installing Debian chromium (apt-get)"
  $SUDO env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends chromium
fi
/usr/bin/chromium --version || true

# 2. npm packages (playwright-core + the two SLS packages, pinned in package-lock.json).
(cd "$HERE" && timeout 300 npm ci --no-audit --no-fund --ignore-scripts)

# 3. The example page's vendored browser builds.
"$REPO_ROOT/examples/browser/vendor.sh" "$HERE/node_modules"

# 4. stsvend.
(cd "$REPO_ROOT" && cargo build --quiet)
BIN="$REPO_ROOT/target/debug/stsvend"

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
PORT="$(free_port)"        # stsvend dev, no CORS (same-origin checks + the CORS-off case)
CORS_PORT="$(free_port)"   # second stsvend dev, STSVEND_CORS_ORIGINS=<static origin>
STATIC_PORT="$(free_port)" # plain static server for examples/browser/ (started by browser.test.mjs)
while [[ "$CORS_PORT" == "$PORT" ]]; do CORS_PORT="$(free_port)"; done
while [[ "$STATIC_PORT" == "$PORT" || "$STATIC_PORT" == "$CORS_PORT" ]]; do STATIC_PORT="$(free_port)"; done
BASE_URL="http://127.0.0.1:$PORT"
CORS_URL="http://127.0.0.1:$CORS_PORT"
STATIC_ORIGIN="http://127.0.0.1:$STATIC_PORT"
SERVER_LOG="$(mktemp "${TMPDIR:-/tmp}/stsvend-browser.XXXXXX")"
CORS_SERVER_LOG="$(mktemp "${TMPDIR:-/tmp}/stsvend-browser-cors.XXXXXX")"
SERVER_PID=""
CORS_SERVER_PID=""

stop_pid() {
  local pid=$1
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}

cleanup() {
  local rc=$?
  stop_pid "$SERVER_PID"
  stop_pid "$CORS_SERVER_PID"
  if [[ $rc -ne 0 ]]; then
    echo "run.sh: FAILED (exit $rc); last stsvend output:" >&2
    tail -n 40 "$SERVER_LOG" >&2 || true
    echo "run.sh: last output of the CORS stsvend:" >&2
    tail -n 40 "$CORS_SERVER_LOG" >&2 || true
  fi
  rm -f "$SERVER_LOG" "$CORS_SERVER_LOG"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_ready() { # <pid> <base url>
  local pid=$1 url=$2 deadline=$((SECONDS + READY_TIMEOUT_S))
  until curl -fsS -o /dev/null --max-time 1 "$url/get_sts_token" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run.sh: stsvend ($url) exited before becoming ready" >&2
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "run.sh: stsvend not answering $url/get_sts_token within ${READY_TIMEOUT_S}s" >&2
      exit 1
    fi
    sleep 0.2
  done
}

# Started from the repo root: `stsvend dev` serves examples/browser/ at /dev/example/.
cd "$REPO_ROOT"
env -u STSVEND_CORS_ORIGINS STSVEND_LISTEN="127.0.0.1:$PORT" STSVEND_ADMIN_LISTEN="127.0.0.1:0" \
  "$BIN" dev >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
STSVEND_LISTEN="127.0.0.1:$CORS_PORT" STSVEND_ADMIN_LISTEN="127.0.0.1:0" STSVEND_CORS_ORIGINS="$STATIC_ORIGIN" \
  "$BIN" dev >"$CORS_SERVER_LOG" 2>&1 &
CORS_SERVER_PID=$!

wait_ready "$SERVER_PID" "$BASE_URL"
echo "run.sh: stsvend dev ready at $BASE_URL (pid $SERVER_PID, no CORS)"
wait_ready "$CORS_SERVER_PID" "$CORS_URL"
echo "run.sh: stsvend dev ready at $CORS_URL (pid $CORS_SERVER_PID, CORS for $STATIC_ORIGIN)"

STSVEND_URL="$BASE_URL" STSVEND_CORS_URL="$CORS_URL" STATIC_PORT="$STATIC_PORT" \
  timeout "$TEST_TIMEOUT_S" node "$HERE/browser.test.mjs"
