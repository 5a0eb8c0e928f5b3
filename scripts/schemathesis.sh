#!/usr/bin/env bash
# Property-based API test: schemathesis against `stsvend dev`, driven by the hand-written
# OpenAPI documents in openapi/ (public.json for the public listener, admin.json for the admin
# one). Every answer must be one the document lists, with its headers and body schema.
#
# Usage: scripts/schemathesis.sh
# Does: creates target/schemathesis-venv with a pinned schemathesis; builds stsvend; starts
# `stsvend dev` on two free loopback ports with a settings file holding a CORS profile
# (`default`) and a JWT profile (`web`), so preflights and 401s are exercised; waits for
# /readyz; runs schemathesis on both documents (bounded examples per operation and a hard
# timeout); prints the number of test cases; always stops the server. Exit non-zero on any
# failure. Rate limits stay on: a 429 is a documented answer, not something to switch off.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${MAX_EXAMPLES:-50}"
READY_TIMEOUT_S=30
RUN_TIMEOUT_S=600 # per document, hard (coreutils timeout)
VENV=target/schemathesis-venv
WORK="$(mktemp -d "${TMPDIR:-/tmp}/stsvend-schemathesis.XXXXXX")"
SERVER_PID=""

cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

# 1. schemathesis, pinned, in its own venv.
if [[ ! -x "$VENV/bin/schemathesis" ]] ||
  [[ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != *"$SCHEMATHESIS_VERSION"* ]]; then
  python3 -m venv "$VENV"
  timeout 300 "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$VENV/bin/schemathesis" --version

# 2. stsvend dev on free loopback ports.
cargo build --quiet
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
while [[ "$ADMIN_PORT" == "$PORT" ]]; do ADMIN_PORT="$(free_port)"; done
cat >"$WORK/stsvend.toml" <<'TOML'
[profiles.default]
role_arn = "acs:ram::1234567890123456:role/sls-web-tracking"
logstore = "my-project/web-log"
cors_origins = ["https://app.example.com"]
# Low enough that a run meets the limiter: 429 is part of the contract being checked.
rate_limit_per_minute = 600
rate_limit_burst = 60

[profiles.web]
role_arn = "acs:ram::1234567890123456:role/sls-web-tracking"
logstore = "my-project/user-events"
auth = "jwt"
jwt_hs256_secret = "schemathesis-only-secret-0123456789abcdef"
jwt_issuer = "https://login.example.com"
jwt_audience = "stsvend"
cors_origins = ["https://app.example.com"]
TOML
STSVEND_LISTEN="127.0.0.1:$PORT" STSVEND_ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT" \
  STSVEND_LOG_FORMAT=json RUST_LOG=warn \
  target/debug/stsvend dev --config "$WORK/stsvend.toml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

ready=""
for _ in $(seq 1 $((READY_TIMEOUT_S * 10))); do
  if curl -fsS --max-time 2 "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1; then
    ready=1
    break
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$ready" ]]; then
  echo "schemathesis.sh: stsvend dev did not become ready within ${READY_TIMEOUT_S}s" >&2
  cat "$WORK/server.log" >&2
  exit 1
fi

# 3. schemathesis on each document. The documents are the committed files; the served copies
# (GET /openapi.json) are the same bytes, checked by tests/api/openapi.rs.
status=0
total=0
started=$SECONDS
for target in "public:openapi/public.json:http://127.0.0.1:$PORT" \
  "admin:openapi/admin.json:http://127.0.0.1:$ADMIN_PORT"; do
  IFS=: read -r name doc url_scheme url_rest url_port <<<"$target"
  url="$url_scheme:$url_rest:$url_port"
  echo "== schemathesis: $name listener ($doc against $url)"
  set +e
  # Run from the scratch directory: schemathesis and hypothesis leave caches in the current one.
  (cd "$WORK" && timeout --kill-after=10 "$RUN_TIMEOUT_S" "$REPO_ROOT/$VENV/bin/schemathesis" run "$REPO_ROOT/$doc" \
    --url "$url" \
    --checks all \
    --max-examples "$MAX_EXAMPLES" \
    --request-timeout 20 \
    --seed 1 \
    --report ndjson --report-ndjson-path "$WORK/$name.ndjson" \
    --no-color) 2>&1 | tee "$WORK/$name.out"
  rc=${PIPESTATUS[0]}
  set -e
  cases=$(python3 - "$WORK/$name.ndjson" <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1]):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    # One ScenarioFinished per generated scenario; each carries its recorded test cases.
    for kind, body in event.items():
        if kind == "ScenarioFinished":
            n += len(body.get("recorder", {}).get("cases", {}))
print(n)
PY
  ) || cases="?"
  echo "schemathesis.sh: $name: $cases test cases, exit $rc"
  [[ "$cases" =~ ^[0-9]+$ ]] && total=$((total + cases))
  [[ $rc -eq 0 ]] || status=1
done
echo "schemathesis.sh: $total test cases in $((SECONDS - started))s; $([[ $status -eq 0 ]] && echo ok || echo FAILED)"
if [[ $status -ne 0 ]]; then
  echo "-- server log (last 40 lines)"
  tail -n 40 "$WORK/server.log"
fi
exit $status
