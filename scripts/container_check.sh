#!/usr/bin/env bash
# Proves the static binary is container-ready without a Docker engine:
#   1. builds the x86_64-unknown-linux-musl release binary the Dockerfile builds (the production
#      one: --no-default-features, without `stsvend dev`);
#   2. checks it is statically linked;
#   3. runs `stsvend serve` inside an empty root holding only /stsvend and the CA bundle
#      (exactly the files of the scratch image), as the image's user 65532 when we are root,
#      against a local HTTPS "STS" whose throwaway CA is added to the root's bundle;
#   4. asserts the admin listener's /healthz, /readyz and /metrics answer 200, /get_sts_token
#      returns credentials JSON, `stsvend healthcheck` (the image's HEALTHCHECK) exits 0 against
#      it and non-zero against a closed port, logs are JSON (STSVEND_LOG_FORMAT=json), and
#      `stsvend dev` exits 2 (not built in);
#   5. stops it with SIGTERM and asserts nothing was written into the root (read-only root
#      filesystem friendly);
#   6. `stsvend check --live` trusts the local STS only while its CA is in the root's bundle.
# Needs: rustup (installs the musl target if missing), musl-tools, file, curl, util-linux
# (chroot/unshare), python3. Installs the missing ones with apt-get when run as root.
# Always cleans up (process and temporary root).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-musl
BIN="target/$TARGET/release/stsvend"
IMAGE_UID=65532
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

say() { printf '%s\n' "$*"; }
fail() { printf 'container check FAILED: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites (idempotent)
need_apt=()
command -v musl-gcc >/dev/null 2>&1 || need_apt+=(musl-tools)
command -v file >/dev/null 2>&1 || need_apt+=(file)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v chroot >/dev/null 2>&1 || need_apt+=(coreutils)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
[ -r "$CA_BUNDLE" ] || need_apt+=(ca-certificates)
if [ "${#need_apt[@]}" -gt 0 ]; then
  say "== installing ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then apt_get=(apt-get); else apt_get=(sudo -n apt-get); fi
  "${apt_get[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
  say "== rustup target add $TARGET"
  rustup target add "$TARGET"
fi

# ---------------------------------------------------------------- 1. build
say "== cargo build --release --locked --no-default-features --target $TARGET"
cargo build --release --locked --no-default-features --target "$TARGET" --bin stsvend
[ -x "$BIN" ] || fail "$BIN was not built"

# ---------------------------------------------------------------- 2. statically linked
say "== static linking"
file_out=$(file -b "$BIN")
say "file: $file_out"
case "$file_out" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) fail "file does not call $BIN statically linked" ;;
esac
# ldd says "not a dynamic executable" (glibc) or "statically linked" (static-pie); anything
# listing a shared library (libc.so, ld-linux) means the image would not start.
ldd_out=$(ldd "$BIN" 2>&1 || true)
say "ldd: $(printf '%s' "$ldd_out" | tr '\n' ' ')"
case "$ldd_out" in
  *"not a dynamic executable"* | *"statically linked"*) ;;
  *) fail "ldd lists shared libraries for $BIN" ;;
esac
if command -v readelf >/dev/null 2>&1 && readelf -d "$BIN" 2>/dev/null | grep -q NEEDED; then
  fail "$BIN has NEEDED shared libraries: $(readelf -d "$BIN" | grep NEEDED)"
fi
size_bytes=$(stat -c %s "$BIN")
stripped_bytes=$(
  tmp_strip=$(mktemp)
  cp "$BIN" "$tmp_strip"
  if command -v strip >/dev/null 2>&1 && strip "$tmp_strip" 2>/dev/null; then stat -c %s "$tmp_strip"; else echo "?"; fi
  rm -f "$tmp_strip"
)
ca_bytes=$(stat -L -c %s "$CA_BUNDLE")
say "binary size: $size_bytes bytes ($((size_bytes / 1024 / 1024)) MiB); stripped: $stripped_bytes bytes; CA bundle: $ca_bytes bytes"
if [ "$stripped_bytes" != "?" ] && [ $((stripped_bytes + ca_bytes)) -ge $((20 * 1024 * 1024)) ]; then
  fail "stripped binary + CA bundle is over the 20 MiB image budget"
fi

# Temporary files and processes, always cleaned up.
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/stsvend-root.XXXXXX")
LOG=$(mktemp "${TMPDIR:-/tmp}/stsvend-root-log.XXXXXX")
TLS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/stsvend-tls.XXXXXX")
PID=""
TLS_PID=""
prefix=() # `sudo -n` when the root is entered through sudo
# Signals stsvend, which runs as another user when entered through sudo.
sig() { "${prefix[@]}" kill "$@" 2>/dev/null; }
cleanup() {
  if [ -n "$PID" ] && sig -0 "$PID"; then
    sig -TERM "$PID" || true
    for _ in $(seq 1 50); do sig -0 "$PID" || break; sleep 0.1; done
    sig -KILL "$PID" || true
  fi
  [ -z "$PID" ] || wait "$PID" 2>/dev/null || true
  if [ -n "$TLS_PID" ]; then kill "$TLS_PID" 2>/dev/null || true; wait "$TLS_PID" 2>/dev/null || true; fi
  rm -rf "$ROOT" "$LOG" "$TLS_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ---------------------------------------------------------------- 3. a local HTTPS STS
# Every STS call is HTTPS, verified against the one CA bundle of the image. A local HTTPS
# "STS" with a certificate from a throwaway CA: `stsvend serve` takes its tokens from it, and
# `stsvend check --live` inside the root must succeed once that CA is in the root's bundle, and
# fail while it is not (so the bundle, not some built-in list, is what the binary trusts).
say "== a local HTTPS STS with a throwaway CA"
command -v openssl >/dev/null 2>&1 || fail "openssl is needed for the TLS check"
(
  cd "$TLS_DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=stsvend container check CA" \
    -keyout ca.key -out ca.crt >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
    -extfile ext.cnf -out server.crt >/dev/null 2>&1
) || fail "could not make the test certificates"
TLS_PORT=$(free_port)
python3 - "$TLS_DIR" "$TLS_PORT" >"$TLS_DIR/server.log" 2>&1 <<'PY' &
import datetime, http.server, json, os, ssl, sys
tls_dir, port = sys.argv[1], int(sys.argv[2])
class Sts(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        body = json.dumps({
            "RequestId": "CONTAINER-CHECK",
            "AssumedRoleUser": {"Arn": "acs:ram::1234567890123456:role/tls-check/check",
                                "AssumedRoleId": "300000000000000000:check"},
            "Credentials": {"AccessKeyId": "STS.TLSCHECK", "AccessKeySecret": "not-a-secret",
                            "SecurityToken": "not-a-token",
                            "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Sts)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(os.path.join(tls_dir, "server.crt"), os.path.join(tls_dir, "server.key"))
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
PY
TLS_PID=$!
for _ in $(seq 1 50); do
  curl -s -o /dev/null --max-time 1 --cacert "$TLS_DIR/ca.crt" "https://127.0.0.1:$TLS_PORT/" && break
  sleep 0.1
done
curl -s -o /dev/null --max-time 2 --cacert "$TLS_DIR/ca.crt" "https://127.0.0.1:$TLS_PORT/" \
  || { cat "$TLS_DIR/server.log" >&2; fail "the local HTTPS STS did not start"; }

# ---------------------------------------------------------------- 4. empty root
# The image's files and nothing else: root-owned, world-readable, nothing writable by the user.
mkdir -p "$ROOT/etc/ssl/certs"
install -m 0755 "$BIN" "$ROOT/stsvend"
# The image's bundle plus the test CA, so the service inside can reach the local STS.
cat "$CA_BUNDLE" "$TLS_DIR/ca.crt" >"$ROOT/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$ROOT/etc/ssl/certs/ca-certificates.crt"
chmod 0755 "$ROOT" "$ROOT/etc" "$ROOT/etc/ssl" "$ROOT/etc/ssl/certs"
before=$(cd "$ROOT" && find . -printf '%p %s %m\n' | sort)
say "empty root $ROOT holds:"
printf '%s\n' "$before" | sed 's/^/  /'

PORT=$(free_port)
ADMIN_PORT=$(free_port)
while [ "$ADMIN_PORT" = "$PORT" ]; do ADMIN_PORT=$(free_port); done

# The image's environment (Dockerfile ENV), with loopback listeners for this test.
run_env=(
  env -i
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  HOME=/
  SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
  STSVEND_LOG_FORMAT=json
  STSVEND_LISTEN="127.0.0.1:$PORT"
  STSVEND_ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT"
)
# What `stsvend serve` and `check --live` need to call the local STS with AccessKey credentials.
sts_env=(
  STSVEND_STS_ENDPOINT="https://127.0.0.1:$TLS_PORT"
  STSVEND_ROLE_ARN=acs:ram::1234567890123456:role/tls-check
  STSVEND_LOGSTORE=container-check/tls
  ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tContainerCheck
  ALIBABA_CLOUD_ACCESS_KEY_SECRET=not-a-real-secret
  ALIBABA_CLOUD_ECS_METADATA_DISABLED=true
  ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true
)

# How to enter the root: as root, chroot and drop to the image's numeric user (what
# `USER 65532:65532` does); otherwise an unprivileged user+mount namespace; otherwise sudo.
# CONTAINER_CHECK_ENTER=chroot|unshare|sudo forces one way (to test the others).
method=${CONTAINER_CHECK_ENTER:-}
if [ -z "$method" ]; then
  if [ "$(id -u)" -eq 0 ]; then method=chroot
  elif unshare -r -m true 2>/dev/null; then method=unshare
  elif sudo -n true 2>/dev/null; then method=sudo
  else fail "cannot enter an empty root: not root, no user namespaces, no passwordless sudo"
  fi
fi
case "$method" in
  chroot) enter=(chroot --userspec="$IMAGE_UID:$IMAGE_UID" "$ROOT"); how="chroot as uid $IMAGE_UID" ;;
  unshare) enter=(unshare -r -m --root="$ROOT"); how="unshare -r -m --root (user namespace)" ;;
  sudo) prefix=(sudo -n); enter=(chroot --userspec="$IMAGE_UID:$IMAGE_UID" "$ROOT"); how="sudo chroot as uid $IMAGE_UID" ;;
  *) fail "CONTAINER_CHECK_ENTER must be chroot, unshare or sudo, not $method" ;;
esac
# sudo goes first: it would drop the environment that env -i sets.
in_root() { "${prefix[@]}" "${run_env[@]}" "${enter[@]}" "$@"; }

say "== stsvend --help inside the empty root ($how)"
help_out=$(in_root /stsvend --help) || fail "the binary does not start in the empty root"
has_healthcheck=0
if printf '%s\n' "$help_out" | grep -Eq '^[[:space:]]+healthcheck([[:space:]]|$)'; then has_healthcheck=1; fi

say "== stsvend dev inside the empty root: not built into the production binary"
rc=0; dev_out=$(in_root /stsvend dev 2>&1) || rc=$?
[ "$rc" = 2 ] || fail "stsvend dev exited $rc in the production binary, not 2: $dev_out"
printf '%s\n' "$dev_out" | grep -q 'not built' || fail "stsvend dev did not say it is not built in: $dev_out"
say "ok: stsvend dev exits 2: $dev_out"

say "== stsvend serve inside the empty root (public 127.0.0.1:$PORT, admin 127.0.0.1:$ADMIN_PORT)"
# A simple command, not the in_root function: env, chroot/unshare and stsvend exec one another,
# so $! is stsvend itself and SIGTERM reaches it (sudo, if used, relays it).
"${prefix[@]}" "${run_env[@]}" "${sts_env[@]}" "${enter[@]}" /stsvend serve >"$LOG" 2>&1 &
PID=$!

status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true; }

# Wait (at most 20 s) for the admin listener's /healthz (what the image's HEALTHCHECK and the
# Kubernetes probes ask).
health_url="http://127.0.0.1:$ADMIN_PORT/healthz"
healthy=0
deadline=$((SECONDS + 20))
while [ "$SECONDS" -lt "$deadline" ]; do
  sig -0 "$PID" || { cat "$LOG" >&2; fail "stsvend serve exited early"; }
  if [ "$(status_of "$health_url")" = 200 ]; then healthy=1; break; fi
  sleep 0.2
done
[ "$healthy" = 1 ] || { cat "$LOG" >&2; fail "$health_url did not answer 200 within 20 s"; }
say "ok: $health_url answered 200"
# Ready once the first token is in: wait (at most 20 s) for it.
deadline=$((SECONDS + 20))
while [ "$SECONDS" -lt "$deadline" ] && [ "$(status_of "http://127.0.0.1:$ADMIN_PORT/readyz")" != 200 ]; do
  sleep 0.2
done
for path in /readyz /metrics; do
  code=$(status_of "http://127.0.0.1:$ADMIN_PORT$path")
  [ "$code" = 200 ] || { cat "$LOG" >&2; fail "admin $path answered $code"; }
done
metrics=$(curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics")
printf '%s\n' "$metrics" | grep -q '^stsvend_' || fail "admin /metrics has no stsvend_ series"
say "ok: admin /readyz and /metrics answered 200 (with stsvend_ series)"

token=$(curl -s --max-time 5 -w '\n%{http_code}' "http://127.0.0.1:$PORT/get_sts_token")
code=${token##*$'\n'}
body=${token%$'\n'*}
[ "$code" = 200 ] || { cat "$LOG" >&2; fail "/get_sts_token answered $code"; }
printf '%s' "$body" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
for key in ("AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"):
    assert isinstance(doc.get(key), str) and doc[key], "missing " + key
assert doc["AccessKeyId"].startswith("STS."), doc["AccessKeyId"][:4]
print("ok: /get_sts_token returned JSON with AccessKeyId " + doc["AccessKeyId"][:8] + "...")
' || fail "/get_sts_token did not return credentials JSON"

if [ "$has_healthcheck" = 1 ]; then
  say "== stsvend healthcheck inside the empty root"
  in_root /stsvend healthcheck --url "$health_url" || fail "stsvend healthcheck --url $health_url exited $?"
  say "ok: stsvend healthcheck --url $health_url exited 0"
  closed=$(free_port)
  if in_root /stsvend healthcheck --url "http://127.0.0.1:$closed/healthz" >/dev/null 2>&1; then
    fail "stsvend healthcheck exited 0 against a closed port"
  fi
  say "ok: stsvend healthcheck against a closed port exited non-zero"
else
  fail "stsvend --help lists no healthcheck subcommand (the Dockerfile's HEALTHCHECK runs it)"
fi

# ---------------------------------------------------------------- 5. stop, read-only root
sig -TERM "$PID"
stopped=0
for _ in $(seq 1 100); do sig -0 "$PID" || { stopped=1; break; }; sleep 0.1; done
[ "$stopped" = 1 ] || fail "stsvend did not stop within 10 s of SIGTERM"
rc=0; wait "$PID" || rc=$?
PID=""
[ "$rc" = 0 ] || { cat "$LOG" >&2; fail "stsvend serve exited $rc after SIGTERM"; }
say "ok: stopped cleanly on SIGTERM"

# STSVEND_LOG_FORMAT=json (the image's setting): log lines are JSON objects.
python3 - "$LOG" <<'PY' || fail "no JSON log line with STSVEND_LOG_FORMAT=json"
import json, sys
n = 0
for line in open(sys.argv[1], errors="replace"):
    line = line.strip()
    if line.startswith("{"):
        doc = json.loads(line)
        assert isinstance(doc, dict) and "level" in doc, line[:80]
        n += 1
assert n > 0
print(f"ok: {n} JSON log lines")
PY

after=$(cd "$ROOT" && find . -printf '%p %s %m\n' | sort)
[ "$before" = "$after" ] || fail "the root changed while stsvend ran: $(diff <(printf '%s\n' "$before") <(printf '%s\n' "$after") || true)"
say "ok: nothing was written into the root"

# ---------------------------------------------------------------- 6. TLS through the CA bundle
say "== TLS: stsvend check --live against the local HTTPS STS, trusted through the root's CA bundle"
check_live() {
  "${prefix[@]}" "${run_env[@]}" "${sts_env[@]}" "${enter[@]}" /stsvend check --live 2>&1
}
bundle="$ROOT/etc/ssl/certs/ca-certificates.crt"
install -m 0644 "$CA_BUNDLE" "$bundle"
rc=0; out=$(check_live) || rc=$?
if [ "$rc" -eq 0 ]; then
  printf '%s\n' "$out" | sed 's/^/  /' >&2
  fail "stsvend trusted a certificate from a CA that is not in the root's bundle"
fi
say "ok: without the test CA in the bundle, check --live failed (exit $rc): $(printf '%s\n' "$out" | grep -m1 -E 'FAILED|failed' || true)"
cat "$CA_BUNDLE" "$TLS_DIR/ca.crt" >"$bundle"
rc=0; out=$(check_live) || rc=$?
install -m 0644 "$CA_BUNDLE" "$bundle"
if [ "$rc" -ne 0 ] || ! printf '%s\n' "$out" | grep -q 'issued STS.TLSC'; then
  printf '%s\n' "$out" | sed 's/^/  /' >&2
  fail "stsvend check --live over HTTPS failed with the test CA in the root's bundle (exit $rc)"
fi
say "ok: with the test CA in the bundle, check --live verified the certificate and got a token"

say "== container check passed: static $TARGET binary, $size_bytes bytes, runs from an empty root"
