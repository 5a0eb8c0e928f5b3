#!/usr/bin/env bash
# Fleet mode's benchmark (issue 15), in one run against one mock STS and one local redis-server:
#
# 1. STS calls per distinct user: three replicas in `jwt` mode; each user asks three times, through
#    a different replica each time (round robin, as a load balancer would send them). Once without
#    Redis (each replica alone), once in fleet mode. Fleet mode should cost one call per user.
# 2. The cached-token hot path: one replica serving cached tokens, without Redis and in fleet mode,
#    in alternating rounds, side by side (wrk). The issue's target: fleet mode within 10 % of a
#    single replica without Redis, printed as a ratio.
#
#   bench/fleet.sh            # 300 users; 10 s per hot-path run, 2 rounds each
#   bench/fleet.sh --quick    # 30 users; 2 s runs, 1 round: checks the script works
#
# Needs redis-server (Debian's package), wrk, curl and python3. Servers run on CPU 0; wrk, the
# mock STS and redis-server on the others.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=300
DURATION=10
ROUNDS=2
if [[ ${1:-} == --quick ]]; then
  USERS=30 DURATION=2 ROUNDS=1
elif [[ -n ${1:-} ]]; then
  echo "usage: bench/fleet.sh [--quick]" >&2
  exit 2
fi
for tool in redis-server wrk curl python3; do
  command -v "$tool" >/dev/null || {
    echo "bench/fleet.sh: $tool is not installed" >&2
    exit 2
  }
done

log() { printf '== %s\n' "$*" >&2; }

if (($(nproc) >= 2)); then
  ON_SERVER=(taskset -c 0)
  ON_LOAD=(taskset -c "1-$(($(nproc) - 1))")
else
  ON_SERVER=()
  ON_LOAD=()
fi

log "building release binaries"
cargo build --release --locked --quiet --example bench-mock-sts
# stsvend on its own, as it ships: built in one command with the examples, its dependencies
# would get the examples' features too, and bench/symbol-order.txt would not match it.
cargo build --release --locked --quiet --bin stsvend
BIN=$PWD/target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to 10 s for `url` to answer 200.
wait_for() {
  for _ in $(seq 100); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "bench/fleet.sh: $1 did not answer within 10 s" >&2
  return 1
}

"${ON_LOAD[@]}" "$BIN/examples/bench-mock-sts" --latency-ms 1 >"$WORK/mock.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$WORK/mock.out" && break; sleep 0.05; done
MOCK=http://$(sed -n 's/^listening on //p' "$WORK/mock.out")
REDIS_PORT=$(free_port)
"${ON_LOAD[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

JWT_SECRET=fleet-bench-secret-0123456789abcdef0123456789
FLEET_ENV=(STSVEND_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  STSVEND_REDIS_ENCRYPTION_KEY=QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=)

# start NAME PORT [VAR=value…]: one replica on CPU 0, its PID appended to PIDS.
start() {
  local name=$1 port=$2
  shift 2
  "${ON_SERVER[@]}" env -i PATH="$PATH" \
    ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tBenchmarkKey0000 \
    ALIBABA_CLOUD_ACCESS_KEY_SECRET=BenchmarkSecret000000000000000 \
    STSVEND_LISTEN=127.0.0.1:"$port" STSVEND_ADMIN_LISTEN=127.0.0.1:0 \
    STSVEND_STS_ENDPOINT="$MOCK/" STSVEND_ROLE_ARN=acs:ram::1000000000000000:role/sls-web-track \
    STSVEND_LOGSTORE=bench-project/bench-logstore STSVEND_LOG_FORMAT=json \
    STSVEND_RATE_LIMIT_PER_MINUTE=6000000 STSVEND_RATE_LIMIT_BURST=1000000 \
    STSVEND_NEW_TOKENS_PER_NETWORK_PER_MINUTE=1000000 STSVEND_STS_BUDGET_PER_SECOND=100 \
    "$@" "$BIN/stsvend" serve >/dev/null 2>"$WORK/$name.log" &
  PIDS+=($!)
}

calls() { curl -sf "$MOCK/__stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["calls"])'; }

# per_user MODE: three replicas (MODE fleet or alone), each user through a different one each
# time; prints the STS calls per user.
per_user() {
  local mode=$1 ports=() first=${#PIDS[@]}
  local extra=(STSVEND_AUTH=jwt STSVEND_JWT_HS256_SECRET="$JWT_SECRET"
    STSVEND_JWT_ISSUER=bench STSVEND_JWT_AUDIENCE=stsvend)
  [[ $mode == fleet ]] && extra+=("${FLEET_ENV[@]}")
  for i in 1 2 3; do
    ports+=("$(free_port)")
    if [[ $mode == fleet ]]; then
      start "$mode-$i" "${ports[-1]}" "${extra[@]}" STSVEND_REPLICA_ID="$mode-$i"
    else
      start "$mode-$i" "${ports[-1]}" "${extra[@]}"
    fi
  done
  for port in "${ports[@]}"; do wait_for "http://127.0.0.1:$port/readyz"; done
  local before
  before=$(calls)
  "${ON_LOAD[@]}" python3 - "$USERS" "$JWT_SECRET" "${ports[@]}" <<'PY'
import base64, hashlib, hmac, json, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
users, secret, ports = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3:]
def b64(data): return base64.urlsafe_b64encode(data).rstrip(b"=")
def jwt(sub):
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": sub, "iss": "bench", "aud": "stsvend", "exp": int(time.time()) + 3600}
    body = head + b"." + b64(json.dumps(claims).encode())
    return (body + b"." + b64(hmac.new(secret, body, hashlib.sha256).digest())).decode()
def ask(job):
    user, attempt = job
    port = ports[(user + attempt) % len(ports)]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/get_sts_token",
                                     headers={"Authorization": "Bearer " + jwt(f"user-{user}")})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status
errors = 0
for attempt in range(3):
    with ThreadPoolExecutor(16) as pool:
        errors += sum(status != 200 for status in pool.map(ask, [(u, attempt) for u in range(users)]))
if errors:
    sys.exit(f"{errors} requests were not answered 200")
PY
  local after
  after=$(calls)
  python3 -c "print(f'{($after - $before) / $USERS:.2f} ({$after - $before} calls for $USERS users)')"
  for pid in "${PIDS[@]:first}"; do kill "$pid" 2>/dev/null || true; done
  PIDS=("${PIDS[@]:0:first}")
}

# hot MODE: one replica serving the shared token, wrk for DURATION seconds; prints req/s.
hot() {
  local mode=$1 port extra=() first=${#PIDS[@]}
  port=$(free_port)
  [[ $mode == fleet ]] && extra+=("${FLEET_ENV[@]}")
  start "hot-$mode" "$port" "${extra[@]}"
  wait_for "http://127.0.0.1:$port/get_sts_token"
  "${ON_LOAD[@]}" wrk -t1 -c50 -d"${DURATION}s" --timeout 5s "http://127.0.0.1:$port/get_sts_token" \
    | awk '/Requests\/sec/ {print $2}'
  for pid in "${PIDS[@]:first}"; do kill "$pid" 2>/dev/null || true; done
  PIDS=("${PIDS[@]:0:first}")
}

log "STS calls per distinct user: $USERS users, three replicas, each user through each replica"
PER_USER_ALONE=$(per_user alone)
PER_USER_FLEET=$(per_user fleet)

log "cached-token hot path, one replica, 50 connections, ${DURATION}s, $ROUNDS round(s) each"
ALONE=() FLEET=()
for _ in $(seq "$ROUNDS"); do
  ALONE+=("$(hot alone)")
  FLEET+=("$(hot fleet)")
done

python3 - "$PER_USER_ALONE" "$PER_USER_FLEET" "${ALONE[*]}" "${FLEET[*]}" <<'PY'
import statistics, sys
alone_calls, fleet_calls, alone, fleet = sys.argv[1:5]
alone = [float(x) for x in alone.split()]
fleet = [float(x) for x in fleet.split()]
a, f = statistics.median(alone), statistics.median(fleet)
ratio = f / a
print("| measure | without Redis (each replica alone) | fleet mode |")
print("| --- | --- | --- |")
print(f"| STS calls per user (3 requests, 3 replicas) | {alone_calls} | {fleet_calls} |")
print(f"| cached req/s, one replica (median) | {a:,.0f} | {f:,.0f} |")
verdict = "met" if ratio >= 0.9 else "**NOT MET**"
print(f"\nfleet / alone cached throughput: {ratio:.2f} (target >= 0.90: {verdict})")
PY
