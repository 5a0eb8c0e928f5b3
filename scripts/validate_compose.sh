#!/usr/bin/env bash
# Validates deploy/compose/ offline (PyPI only; no Docker engine, nothing is started in a
# container):
#   1. compose.yaml, after Compose's variable interpolation (with stand-in values for the
#      variables it requires from the operator), against the Compose specification's JSON schema:
#      compose/config/compose_spec.json from the docker-compose 1.29.2 wheel on PyPI (downloaded
#      with pip, hash-checked, that one file extracted; the package is not installed), with
#      jsonschema; plus the healthcheck durations, which the schema leaves to a format checker;
#   2. the fleet wiring: three stsvend services built from the repository's Dockerfile, each with
#      its own STSVEND_REPLICA_ID and otherwise the same environment, Redis named by a service,
#      the encryption key from a declared file secret (git-ignored), admin ports published on
#      127.0.0.1 only, nginx.conf's upstream naming exactly the three services on 8080, the
#      balancer's fixed address in STSVEND_TRUSTED_PROXIES, every STSVEND_* name in the README's
#      settings table;
#   3. each replica's environment with `stsvend check` (unknown STSVEND_* variables and invalid
#      values are errors there), against a throwaway local redis-server standing in for the
#      `redis` service, so the fleet store line must read OK: the key file is read, a sealed
#      value round-trips. Fake static credentials, the metadata service switched off.
# Usage: scripts/validate_compose.sh
#        STSVEND_BIN=path/to/stsvend ...   (else target/debug/stsvend, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_DIR=deploy/compose
VENV=target/composevenv
REQUIREMENTS=scripts/requirements-compose.txt
# The schema's source: this wheel, pinned by hash.
SCHEMA_WHEEL=docker-compose==1.29.2
SCHEMA_WHEEL_SHA256=8d5589373b35c8d3b1c8c1182c6e4a4ff14bffa3dd0b605fcd08f73c94cef809
SCHEMA=target/compose-schema/compose_spec.json

# The venv is rebuilt when the pinned requirements change.
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== installing jsonschema and PyYAML into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  echo "$want" >"$stamp"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/stsvend-compose.XXXXXX")
redis_pid=
cleanup() {
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ ! -s "$SCHEMA" ] || [ "$(cat "$SCHEMA.sha256" 2>/dev/null)" != "$SCHEMA_WHEEL_SHA256" ]; then
  echo "== fetching compose_spec.json from the $SCHEMA_WHEEL wheel (not installed)"
  "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$work/wheel" "$SCHEMA_WHEEL"
  wheel=$(find "$work/wheel" -name '*.whl' | head -n1)
  got=$(sha256sum "$wheel" | cut -d' ' -f1)
  if [ "$got" != "$SCHEMA_WHEEL_SHA256" ]; then
    echo "FAILED: $wheel has sha256 $got, expected $SCHEMA_WHEEL_SHA256" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$SCHEMA")"
  "$VENV/bin/python" -c '
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("compose/config/compose_spec.json"))
' "$wheel" "$SCHEMA"
  echo "$SCHEMA_WHEEL_SHA256" >"$SCHEMA.sha256"
fi

echo "== $COMPOSE_DIR/compose.yaml: Compose specification schema, fleet wiring, nginx upstreams"
"$VENV/bin/python" - "$COMPOSE_DIR" "$SCHEMA" "$work" <<'PY'
import json, os, re, subprocess, sys
import yaml
from jsonschema import Draft201909Validator

compose_dir, schema_path, work = sys.argv[1:4]
errors = []
def check(ok, message):
    if not ok:
        errors.append(message)

# Stand-ins for what the file requires from the operator's shell (${VAR:?message}).
STAND_INS = {
    "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tValidateComposeOnly",
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "not-a-real-secret",
    "STSVEND_ROLE_ARN": "acs:ram::1234567890123456:role/sls-web-tracking",
    "STSVEND_LOGSTORE": "my-project/web-log",
}
VARIABLE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
def interpolate(value, where):
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}."""
    if isinstance(value, dict):
        return {k: interpolate(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    def one(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        if name in STAND_INS:
            return STAND_INS[name]
        if m.group(2) in (":-", "-"):
            return m.group(3)
        check(False, f"{where}: ${{{name}}} has neither a default nor a stand-in here")
        return ""
    return VARIABLE.sub(one, value)

path = os.path.join(compose_dir, "compose.yaml")
raw = yaml.safe_load(open(path))          # YAML anchors and << merge keys resolved, as Compose does
doc = interpolate(raw, "compose.yaml")
required = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", open(path).read())))
check(required and set(required) <= set(STAND_INS), f"required variables {required} vs stand-ins {sorted(STAND_INS)}")

# 1. The schema.
schema = json.load(open(schema_path))
validator = Draft201909Validator(schema)
for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
    errors.append(f"schema: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}")
# "format": "duration" is not checked by jsonschema without a format checker (and Compose's
# durations are Go's, not ISO 8601): check them here.
duration = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")
for name, svc in doc.get("services", {}).items():
    for field in ("interval", "timeout", "start_period"):
        v = (svc.get("healthcheck") or {}).get(field)
        if v is not None:
            check(isinstance(v, str) and duration.match(v), f"{name}: healthcheck {field} {v!r} is not a duration")
    check("healthcheck" in svc, f"{name}: no healthcheck")

# 2. The fleet wiring.
services = doc.get("services", {})
def env_of(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}

replicas = {n: s for n, s in services.items() if s.get("build")}
check(len(replicas) == 3, f"expected three stsvend services built from the Dockerfile, found {sorted(replicas)}")
envs = {n: env_of(s) for n, s in replicas.items()}
for name, svc in replicas.items():
    build = svc["build"]
    context = os.path.normpath(os.path.join(compose_dir, build["context"] if isinstance(build, dict) else build))
    dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
    check(os.path.samefile(context, ".") and os.path.isfile(os.path.join(context, dockerfile)),
          f"{name}: build context {context} / {dockerfile} is not the repository's Dockerfile")
    env = envs[name]
    check(env.get("STSVEND_REPLICA_ID") == name, f"{name}: STSVEND_REPLICA_ID is {env.get('STSVEND_REPLICA_ID')!r}")
    m = re.match(r"^rediss?://(?:[^@/]*@)?([^:/]+)(?::\d+)?(/\d+)?$", env.get("STSVEND_REDIS_URL", ""))
    check(m and m.group(1) in services and m.group(1) not in replicas,
          f"{name}: STSVEND_REDIS_URL {env.get('STSVEND_REDIS_URL')!r} does not name a Redis service")
    if m and m.group(1) in services:
        dep = (svc.get("depends_on") or {}).get(m.group(1)) if isinstance(svc.get("depends_on"), dict) else None
        check(dep and dep.get("condition") == "service_healthy", f"{name}: does not wait for {m.group(1)} to be healthy")
    key_file = env.get("STSVEND_REDIS_ENCRYPTION_KEY_FILE", "")
    secrets = [s if isinstance(s, str) else s.get("target", s["source"]) for s in svc.get("secrets", [])]
    check(key_file.startswith("/run/secrets/") and key_file[len("/run/secrets/"):] in secrets,
          f"{name}: STSVEND_REDIS_ENCRYPTION_KEY_FILE {key_file!r} is not one of its secrets {secrets}")
    check("STSVEND_REDIS_ENCRYPTION_KEY" not in env, f"{name}: the encryption key is inline")
    check(svc.get("read_only") is True, f"{name}: read_only is not true")
    for p in svc.get("ports", []):
        p = str(p)
        if p.split(":")[-1].split("/")[0] == "9090":
            check(p.startswith("127.0.0.1:"), f"{name}: admin port published beyond loopback: {p}")
for name, env in envs.items():
    rest = {k: v for k, v in env.items() if k != "STSVEND_REPLICA_ID"}
    first = next(iter(envs.values()))
    check(rest == {k: v for k, v in first.items() if k != "STSVEND_REPLICA_ID"},
          f"{name}: environment differs from the other replicas beyond STSVEND_REPLICA_ID")
check(len({e.get("STSVEND_REPLICA_ID") for e in envs.values()}) == len(envs), "replica ids are not distinct")

for sname, secret in (doc.get("secrets") or {}).items():
    f = os.path.join(compose_dir, secret.get("file", ""))
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", f]).returncode == 0
    check(ignored, f"secret {sname}: {f} is not git-ignored")
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", f], capture_output=True).returncode == 0
    check(not tracked, f"secret {sname}: {f} is committed")

# Every STSVEND_* name the file sets is in the README's settings table.
readme = open("README.md").read()
table = readme[readme.index("\n## Settings"):readme.index("\n## How tokens are kept")]
known = set(re.findall(r"^\| `(STSVEND_[A-Z0-9_]+)` \|", table, re.M))
check(len(known) > 40, f"found only {len(known)} settings in the README's table")
for name, env in envs.items():
    for k in env:
        if k.startswith("STSVEND_"):
            check(k in known, f"{name}: {k} is not in the README's settings table")

# The balancer: nginx.conf's upstream names exactly the three services, on their 8080.
balancers = [n for n, s in services.items() if str(s.get("image", "")).startswith("nginx")]
check(len(balancers) == 1, f"expected one nginx balancer, found {balancers}")
if balancers:
    b = services[balancers[0]]
    mounts = [v for v in b.get("volumes", []) if isinstance(v, str) and v.split(":")[1] == "/etc/nginx/nginx.conf"]
    check(len(mounts) == 1, "nginx.conf is not mounted at /etc/nginx/nginx.conf")
    conf_path = os.path.join(compose_dir, mounts[0].split(":")[0]) if mounts else os.path.join(compose_dir, "nginx.conf")
    conf = re.sub(r"#[^\n]*", "", open(conf_path).read())
    ups = re.findall(r"upstream\s+(\S+)\s*\{([^}]*)\}", conf)
    check(len(ups) == 1, f"expected one upstream block, found {len(ups)}")
    if ups:
        upname, body = ups[0]
        servers = re.findall(r"^\s*server\s+([^\s;:]+):(\d+)", body, re.M)
        check(sorted(h for h, _ in servers) == sorted(replicas), f"upstream servers {servers} != services {sorted(replicas)}")
        check(all(port == "8080" for _, port in servers), f"upstream ports {servers} are not the public 8080")
        check(re.search(r"proxy_pass\s+http://" + re.escape(upname) + r"\s*;", conf), f"no proxy_pass to upstream {upname}")
        check(not re.search(r"\b(ip_hash|hash|least_conn|random)\b", body), "upstream is not round robin")
    listens = re.findall(r"^\s*listen\s+(\d+)", conf, re.M)
    published = [str(p).split(":") for p in b.get("ports", [])]
    check(published and all(p[-1] in listens for p in published), f"published {b.get('ports')} vs nginx listen {listens}")
    check(all(len(p) == 3 and p[0] == "127.0.0.1" for p in published), f"balancer published beyond loopback: {b.get('ports')}")
    check(re.search(r"X-Forwarded-For\s+\$proxy_add_x_forwarded_for", conf), "nginx does not set X-Forwarded-For")
    addresses = [n.get("ipv4_address") for n in (b.get("networks") or {}).values() if isinstance(n, dict)]
    for name, env in envs.items():
        check(any(a and env.get("STSVEND_TRUSTED_PROXIES") in (a, a + "/32") for a in addresses),
              f"{name}: STSVEND_TRUSTED_PROXIES {env.get('STSVEND_TRUSTED_PROXIES')!r} is not the balancer's address {addresses}")
    for dep in replicas:
        check((b.get("depends_on") or {}).get(dep, {}).get("condition") == "service_healthy",
              f"balancer does not wait for {dep} to be healthy")

# The replicas' environments, for stsvend check: one file per replica, NAME=VALUE lines.
for name, env in envs.items():
    with open(os.path.join(work, f"env.{name}"), "w") as out:
        for k, v in env.items():
            check("\n" not in v, f"{name}: {k} holds a newline")
            out.write(f"{k}={v}\n")

if errors:
    for e in errors:
        print("FAILED:", e, file=sys.stderr)
    sys.exit(1)
print(f"ok: schema ({schema.get('title')}, {os.path.basename(schema_path)}), {len(services)} services, "
      f"replicas {', '.join(sorted(replicas))}, balancer {balancers[0]} -> {len(replicas)} upstreams")
PY

echo "== each replica's environment, read by stsvend check (a local redis-server stands in for \`redis\`)"
bin=${STSVEND_BIN:-target/debug/stsvend}
if [ -z "${STSVEND_BIN:-}" ]; then
  cargo build --locked --quiet --bin stsvend
fi
command -v redis-server >/dev/null || { echo "FAILED: redis-server is not installed (apt-get install -y redis-server)" >&2; exit 1; }
port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 50); do
  if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
  sleep 0.1
done
openssl rand -base64 32 >"$work/redis-key"
mkdir -p "$work/home"
for envfile in "$work"/env.*; do
  name=${envfile##*/env.}
  # The compose network's names and the secret's mount point, mapped to this machine.
  mapfile -t replica_env < <(sed \
    -e "s|^STSVEND_REDIS_URL=redis://redis:6379|STSVEND_REDIS_URL=redis://127.0.0.1:$port|" \
    -e "s|^\(STSVEND_REDIS_ENCRYPTION_KEY_FILE\)=/run/secrets/.*|\1=$work/redis-key|" "$envfile")
  rc=0
  out=$(env -i HOME="$work/home" "${replica_env[@]}" \
    ALIBABA_CLOUD_ECS_METADATA_DISABLED=true \
    ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true \
    "$bin" check 2>&1) || rc=$?
  echo "  -- $name"
  printf '%s\n' "$out" | sed 's/^/  /'
  if [ "$rc" -ne 0 ] || ! printf '%s\n' "$out" | grep -q '^settings: OK' \
     || ! printf '%s\n' "$out" | grep -q "^fleet store redis://127.0.0.1:$port as replica $name: OK"; then
    echo "FAILED: stsvend check rejected $name's environment (exit $rc)" >&2
    exit 1
  fi
done

echo "== $COMPOSE_DIR valid (statically; not started)"
