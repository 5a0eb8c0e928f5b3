#!/usr/bin/env bash
# Peak resident memory of the release binary at the defaults' worst case: a per-caller token
# cache filled towards its 64 MiB bound, then STSVEND_MAX_CONNECTIONS (10 000) idle connections
# held at once, first HTTP/1.1 keep-alives, then HTTP/2 (h2c) connections. Reports VmRSS and
# VmHWM from /proc as JSON lines and a summary, so the manifests' memory limit can be checked
# against a figure (deploy/README.md quotes it).
#
#   scripts/peak_rss.sh                 # about 2 minutes after the build: a 60 s fill, extrapolated
#   PEAK_FILL_SECONDS=1200 scripts/peak_rss.sh   # fill the cache for real (about 15 minutes)
#
# Every setting is stsvend's default except those that only pace the fill (the STS budget at its
# maximum, 100/s, and the rate limits, so one loopback client may ask for many subjects): they
# bound how fast the cache fills, not how much it holds. The cache can take only 80 new tokens a
# second (the budget less the shared tokens' fifth), and a full one holds ~70 000 mock tokens, so
# by default the fill stops after PEAK_FILL_SECONDS and the rest of the cache is extrapolated
# from the memory each token took: the summary says which.
#
# PEAK_BIN_DIR: a directory with stsvend and examples/bench-{mock-sts,drive} (default: a release
# build of this checkout). PEAK_CONNECTIONS (10000). Needs root or a hard open-files limit of at
# least PEAK_CONNECTIONS + 2000; Linux only (/proc).
set -euo pipefail
cd "$(dirname "$0")/.."

FILL_SECONDS=${PEAK_FILL_SECONDS:-60}
CONNECTIONS=${PEAK_CONNECTIONS:-10000}
CACHE_BOUND=$((64 * 1024 * 1024)) # src/tokens/callers.rs MAX_CACHE_BYTES
SECRET=peak-rss-hs256-secret-0123456789abcdef
log() { printf '== %s\n' "$*" >&2; }

if [[ -z ${PEAK_BIN_DIR:-} ]]; then
  log "building release binaries"
  nice -n 10 cargo build --release --locked --quiet --example bench-mock-sts --example bench-drive
  # stsvend on its own, as it ships: built in one command with the examples, its dependencies
  # would get the examples' features too, and bench/symbol-order.txt would not match it.
  nice -n 10 cargo build --release --locked --quiet --bin stsvend
  PEAK_BIN_DIR=target/release
fi
BIN=$PEAK_BIN_DIR

want_fds=$((CONNECTIONS + 2000)) # per process: stsvend and the client each
ulimit -n "$want_fds" 2>/dev/null || ulimit -Sn "$want_fds" 2>/dev/null || {
  echo "FAILED: cannot raise the open-files limit to $want_fds (hard limit $(ulimit -Hn)); run as root" >&2
  exit 1
}

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

"$BIN/examples/bench-mock-sts" --latency-ms 0 >"$WORK/mock.out" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$WORK/mock.out" && break; sleep 0.05; done
MOCK=http://$(sed -n 's/^listening on //p' "$WORK/mock.out")

PORT=$(free_port)
ADMIN=$(free_port)
env -i PATH="$PATH" HOME="$WORK" \
  ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tPeakRssKey000000 ALIBABA_CLOUD_ACCESS_KEY_SECRET=PeakRssSecret000000000000000 \
  STSVEND_LISTEN=127.0.0.1:"$PORT" STSVEND_ADMIN_LISTEN=127.0.0.1:"$ADMIN" \
  STSVEND_STS_ENDPOINT="$MOCK/" STSVEND_ROLE_ARN=acs:ram::1000000000000000:role/peak-rss \
  STSVEND_LOGSTORE=peak-project/peak-logstore STSVEND_LOG_FORMAT=json \
  STSVEND_AUTH=jwt STSVEND_JWT_HS256_SECRET="$SECRET" STSVEND_JWT_ALGORITHMS=HS256 \
  STSVEND_JWT_ACCEPT_ANY_AUDIENCE=true STSVEND_STS_BUDGET_PER_SECOND=100 \
  STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE=1000000 \
  STSVEND_RATE_LIMIT_PER_MINUTE=6000000 STSVEND_RATE_LIMIT_BURST=1000000 \
  "$BIN/stsvend" serve >/dev/null 2>"$WORK/stsvend.log" &
PID=$!
PIDS+=("$PID")
URL=http://127.0.0.1:$PORT/get_sts_token
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$ADMIN/healthz" && break; sleep 0.05; done
misses() {
  curl -s "http://127.0.0.1:$ADMIN/metrics" |
    awk '/^stsvend_token_cache_total\{/ && /result="miss"/ {n += $2} END {print n + 0}'
}
sleep 1
base_kib=$(status_kib "$PID" VmRSS)
log "started: VmRSS $base_kib KiB"
echo "{\"phase\":\"start\",\"vm_rss_kib\":$base_kib,\"vm_hwm_kib\":$(status_kib "$PID" VmHWM)}"

# --- One token, for the cache's weight of an entry (body + session name + the token's audit
# fields + 128, callers.rs): a 20-character session name, and 113 bytes of audit fields for it
# (`,"role_session_name":"…","access_key_id_prefix":"…","expiration":"…"`).
"$BIN/examples/bench-drive" subjects "$URL" "$SECRET" 1 1 "$WORK/one.txt" >/dev/null
body=$(curl -s -H "Authorization: Bearer $(head -n 1 "$WORK/one.txt")" "$URL" | wc -c)
weight=$((body + 128 + 20 + 113))
full=$((CACHE_BOUND / weight))

# --- The fill: distinct subjects, each one AssumeRole and one cache entry, for at most
# FILL_SECONDS (bench-drive paces itself on the 503s of the spent budget).
log "filling the per-caller cache: up to $full subjects (entry weight ~$weight bytes), at most ${FILL_SECONDS}s"
timeout "$FILL_SECONDS" "$BIN/examples/bench-drive" subjects "$URL" "$SECRET" "$((full + full / 20))" 64 \
  "$WORK/tokens.txt" >/dev/null || true
sleep 2
filled=$(misses)
fill_kib=$(status_kib "$PID" VmRSS)
per_entry=$(python3 -c "print(round(max($fill_kib - $base_kib, 0) * 1024 / max($filled, 1)))")
log "cache: $filled tokens (a full cache holds ~$full), VmRSS $fill_kib KiB, ~$per_entry bytes each"
echo "{\"phase\":\"cache\",\"tokens\":$filled,\"full_at\":$full,\"entry_weight_bytes\":$weight,\"rss_bytes_per_token\":$per_entry,\"vm_rss_kib\":$fill_kib,\"vm_hwm_kib\":$(status_kib "$PID" VmHWM)}"

# --- The crowd: CONNECTIONS idle connections at once, 1000 per loopback address (the
# per-address default), each HTTP/1.1 after one answered request, or HTTP/2 after its preface.
hold() { # MODE
  timeout 120 python3 - "$PORT" "$CONNECTIONS" "$1" "$PID" "$ADMIN" <<'PY'
import socket, sys, time, urllib.request
port, n, mode, pid, admin = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def open_on_server():
    page = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in page.splitlines()
               if l.startswith('stsvend_connections_open{') and 'listener="public"' in l)
def status(key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
h1 = b"GET /healthz HTTP/1.1\r\nHost: peak\r\n\r\n"
h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
held, failed = [], 0
for i in range(n):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.bind((f"127.0.0.{2 + i // 1000}", 0))
        s.connect(("127.0.0.1", port))
        if mode == "http1":
            s.sendall(h1)
            got = b""
            while b"\r\n\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    raise OSError("closed")
                got += chunk
        else:
            s.sendall(h2)
        held.append(s)
    except OSError:
        failed += 1
        s.close()
time.sleep(2)  # let the server settle every connection's buffers
print(f'{{"phase":"{mode}","connections":{len(held)},"failed":{failed},'
      f'"open_on_server":{open_on_server():.0f},'
      f'"vm_rss_kib":{status("VmRSS")},"vm_hwm_kib":{status("VmHWM")}}}', flush=True)
for s in held:
    s.close()
PY
}
log "holding $CONNECTIONS idle HTTP/1.1 connections"
hold http1
# Closed by the client: give the server time to see every close before the next crowd.
sleep 10
log "holding $CONNECTIONS idle HTTP/2 (h2c) connections"
hold h2c
sleep 1

hwm=$(status_kib "$PID" VmHWM)
still=$(python3 -c "print(max($full - $filled, 0))")
projected=$(python3 -c "print(round($hwm / 1024 + $still * $per_entry / 1048576, 1))")
echo "{\"phase\":\"end\",\"vm_hwm_kib\":$hwm,\"tokens\":$filled,\"full_at\":$full,\"projected_full_cache_peak_mib\":$projected}"
if ((still > 0)); then
  log "peak VmHWM $((hwm / 1024)) MiB with $filled of ~$full tokens cached; with a full cache: ~$projected MiB (extrapolated at $per_entry bytes a token)"
else
  log "peak VmHWM $((hwm / 1024)) MiB with a full cache ($filled tokens) and $CONNECTIONS connections"
fi
