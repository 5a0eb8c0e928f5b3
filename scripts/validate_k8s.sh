#!/usr/bin/env bash
# Validates deploy/kubernetes/ offline (PyPI only: kubernetes-validate ships the schemas):
#   1. every manifest against the Kubernetes API schemas of each version in K8S_VERSIONS, strict
#      (unknown fields are errors, and so is a kind without a schema);
#   2. the same with the commented-out alternatives (manual RRSA token volume, native HTTPS)
#      switched on, so the documented variants stay valid too;
#   3. the references between the manifests (kustomization resources, namespace, names,
#      selectors, named ports, ServiceAccount, ConfigMap), the image tag (Cargo.toml's version,
#      never `latest`), and the optional servicemonitor.yaml (a Prometheus Operator CRD, so no
#      schema here: its shape, its fields against the CRD's, and that it scrapes the admin
#      Service's port, with and without its admin-token block; not in the kustomization);
#   4. the ConfigMap's stsvend.toml and the Deployment's environment with `stsvend check`
#      (no network: fake static credentials, the metadata service switched off);
#   5. the fleet overlay deploy/kubernetes-fleet/: the base Deployment with its patch merged
#      (a strategic merge by name, cross-checked against `kubectl kustomize` when kubectl is
#      installed), Valkey, its NetworkPolicy and the Secret template, strict against the same
#      versions; their references (URL -> Service -> pods, key file -> mounted Secret key,
#      NetworkPolicy -> stsvend pods); and the patched environment with `stsvend check` against
#      a throwaway local redis-server standing in for Valkey (the fleet store line must be OK).
# Usage: scripts/validate_k8s.sh            (K8S_VERSIONS="1.30.0 1.33.0" by default)
#        STSVEND_BIN=path/to/stsvend ...   (else target/debug/stsvend, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.33.0"}
MANIFESTS=deploy/kubernetes
FLEET=deploy/kubernetes-fleet
VENV=target/k8svenv
REQUIREMENTS=scripts/requirements-k8s.txt

# The venv is rebuilt when the pinned requirements change.
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/kubernetes-validate" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== installing kubernetes-validate into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  echo "$want" >"$stamp"
fi
echo "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version)"

work=$(mktemp -d "${TMPDIR:-/tmp}/stsvend-k8s.XXXXXX")
redis_pid=
cleanup() {
  if [ -n "$redis_pid" ]; then kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Every manifest except the kustomization (not a Kubernetes API kind; checked in step 3) and
# the optional ServiceMonitor (a CRD kind kubernetes-validate has no schema for; step 3).
mapfile -t files < <(find "$MANIFESTS" -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml ! -name servicemonitor.yaml | sort)
[ "${#files[@]}" -gt 0 ] || { echo "no manifests in $MANIFESTS" >&2; exit 1; }

# Step 2's variant: lines under a "# --- manual RRSA" or "# --- native HTTPS" marker are
# uncommented up to the next marker or the first line that is not a comment.
mkdir -p "$work/variant"
for f in "${files[@]}"; do
  awk '
    /^[[:space:]]*# --- (manual RRSA|native HTTPS)/ { on = 1; next }
    /^[[:space:]]*# ---/ { on = 0; next }
    on && /^[[:space:]]*# / { sub(/# /, ""); print; next }
    { on = 0; print }
  ' "$f" >"$work/variant/$(basename "$f")"
done
if cmp -s "$MANIFESTS/deployment.yaml" "$work/variant/deployment.yaml"; then
  echo "the manual RRSA / native HTTPS blocks were not found in deployment.yaml" >&2
  exit 1
fi

validate() { # label, version, files...
  local label=$1 version=$2
  shift 2
  local out rc=0
  out=$("$VENV/bin/kubernetes-validate" --strict -k "$version" "$@" 2>&1) || rc=$?
  printf '%s\n' "$out" | sed -e "s|$work/variant/|variant:|" -e "s|$work/fleet/|fleet:|"
  if [ "$rc" -ne 0 ] || printf '%s\n' "$out" | grep -q '^WARN'; then
    echo "FAILED: $label against Kubernetes $version" >&2
    exit 1
  fi
}
for version in $K8S_VERSIONS; do
  echo "== Kubernetes $version, strict: $MANIFESTS"
  validate "$MANIFESTS" "$version" "${files[@]}"
  echo "== Kubernetes $version, strict: with manual RRSA and native HTTPS switched on"
  validate "variant" "$version" "$work/variant/"*.yaml
done

echo "== references between the manifests"
"$VENV/bin/python" - "$MANIFESTS" "$work" <<'PY'
import os, re, sys, yaml

root, work = sys.argv[1], sys.argv[2]
errors = []
def check(ok, message):
    if not ok:
        errors.append(message)

kust = yaml.safe_load(open(os.path.join(root, "kustomization.yaml")))
listed = kust.get("resources", [])
# Needs CRDs a cluster may not have: never in the default kustomization.
OPTIONAL = {"servicemonitor.yaml"}
present = sorted(f for f in os.listdir(root)
                 if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml" and f not in OPTIONAL)
for f in listed:
    check(os.path.exists(os.path.join(root, f)), f"kustomization lists {f}, which does not exist")
    check(f not in OPTIONAL, f"kustomization lists the optional {f} (it needs CRDs a cluster may not have)")
for f in present:
    check(f in listed, f"{f} is not listed in kustomization.yaml resources")

docs = []
for f in present:
    for doc in yaml.safe_load_all(open(os.path.join(root, f))):
        if doc:
            docs.append((f, doc))
by_kind = {}
for f, doc in docs:
    by_kind.setdefault(doc["kind"], []).append(doc)
    meta = doc["metadata"]
    if doc["kind"] == "Namespace":
        check(meta["name"] == kust["namespace"], f"{f}: namespace {meta['name']} != kustomization namespace")
        labels = meta.get("labels", {})
        check(labels.get("pod-identity.alibabacloud.com/injection") == "on", f"{f}: RRSA injection label missing")
    else:
        check(meta.get("namespace") == kust["namespace"], f"{f}: {doc['kind']}/{meta['name']} not in namespace {kust['namespace']}")

def one(kind):
    items = by_kind.get(kind, [])
    check(len(items) == 1, f"expected one {kind}, found {len(items)}")
    return items[0] if items else {}

deploy = one("Deployment")
pod = deploy["spec"]["template"]["spec"]
pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
check(all(pod_labels.get(k) == v for k, v in deploy["spec"]["selector"]["matchLabels"].items()),
      "Deployment selector does not match its pod labels")
[container] = pod["containers"]
port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
check(port_names.get("http") == 8080 and port_names.get("admin") == 9090, f"container ports are {port_names}")

images = {i["name"]: i for i in kust.get("images", [])}
name, _, tag = container["image"].rpartition(":")
check(name in images, f"kustomization images do not cover {container['image']}")
# The image is pinned to this tree's release, the tag deploy/README.md tells to build and push.
version = re.search(r'^version\s*=\s*"([^"]+)"', open("Cargo.toml").read(), re.M).group(1)
check(tag == version, f"deployment.yaml's image tag {tag!r} is not Cargo.toml's version {version!r}")
override = images.get(name, {})
check(str(override.get("newTag", "")) == version or "digest" in override,
      f"kustomization.yaml pins {override.get('newTag')!r}, not Cargo.toml's version {version!r} or a digest")
check(container.get("imagePullPolicy") == "IfNotPresent" or container.get("imagePullPolicy") is None,
      f"imagePullPolicy {container.get('imagePullPolicy')!r}: a pinned tag needs no Always")

# The worst case the defaults allow (a full per-caller cache and 10 000 idle connections) peaked
# at 455 MiB in scripts/peak_rss.sh (deploy/README.md, "Memory"): the limit must hold it.
PEAK_MIB = 455
mem = str(container.get("resources", {}).get("limits", {}).get("memory", ""))
m = re.fullmatch(r"(\d+)(Mi|Gi)", mem)
check(m and int(m.group(1)) * (1024 if m.group(2) == "Gi" else 1) > PEAK_MIB,
      f"memory limit {mem!r} is not above the measured peak of {PEAK_MIB} MiB at the defaults")

sa = one("ServiceAccount")
check(pod.get("serviceAccountName") == sa["metadata"]["name"], "Deployment does not use the ServiceAccount")
check("pod-identity.alibabacloud.com/role-name" in sa["metadata"].get("annotations", {}),
      "ServiceAccount lacks the RRSA role-name annotation")

cm = one("ConfigMap")
config_args = container.get("args", [])
check("--config" in config_args, "container args do not pass --config")
config_path = config_args[config_args.index("--config") + 1] if "--config" in config_args else ""
mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
volumes = {v["name"]: v for v in pod.get("volumes", [])}
found_config = False
for name, mount in mounts.items():
    vol = volumes.get(name)
    check(vol is not None, f"volumeMount {name} has no volume")
    if vol and "configMap" in vol:
        check(vol["configMap"]["name"] == cm["metadata"]["name"], f"volume {name} names ConfigMap {vol['configMap']['name']}")
        for item in vol["configMap"].get("items", []):
            check(item["key"] in cm["data"], f"ConfigMap has no key {item['key']}")
            if os.path.join(mount["mountPath"], item["path"]) == config_path:
                found_config = True
                with open(os.path.join(work, "stsvend.toml"), "w") as out:
                    out.write(cm["data"][item["key"]])
check(found_config, f"--config {config_path} is not a file of the mounted ConfigMap")

sc = container.get("securityContext", {})
check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
check(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities are not all dropped")
check(pod.get("securityContext", {}).get("runAsNonRoot") is True, "runAsNonRoot is not set")
for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
    get = container.get(probe, {}).get("httpGet", {})
    check(get.get("path") == path and get.get("port") == "admin", f"{probe} is not {path} on the admin port")

for svc in by_kind.get("Service", []):
    sel = svc["spec"]["selector"]
    check(all(pod_labels.get(k) == v for k, v in sel.items()), f"Service {svc['metadata']['name']} selects no pod")
    for p in svc["spec"]["ports"]:
        target = p.get("targetPort", p["port"])
        check(target in port_names or target in port_names.values(),
              f"Service {svc['metadata']['name']} targets unknown port {target}")

hpa = one("HorizontalPodAutoscaler")
ref = hpa["spec"]["scaleTargetRef"]
check((ref["kind"], ref["name"]) == ("Deployment", deploy["metadata"]["name"]), "HPA does not scale the Deployment")
pdb = one("PodDisruptionBudget")
check(all(pod_labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items()), "PDB selects no pod")
for np in by_kind.get("NetworkPolicy", []):
    check(all(pod_labels.get(k) == v for k, v in np["spec"]["podSelector"]["matchLabels"].items()),
          f"NetworkPolicy {np['metadata']['name']} selects no pod")

# The optional ServiceMonitor: no CRD schema offline, so its shape, each field against the
# fields the monitoring.coreos.com/v1 CRD defines (the ones a typo would hit), and what it
# scrapes: the admin Service's named port. Checked as shipped and with the admin-token block on.
SM_SPEC = {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels", "podTargetLabels",
           "sampleLimit", "targetLimit", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
           "attachMetadata", "scrapeProtocols", "fallbackScrapeProtocol", "scrapeClass",
           "keepDroppedTargets", "bodySizeLimit", "selectorMechanism", "serviceDiscoveryRole"}
SM_ENDPOINT = {"port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
               "tlsConfig", "bearerTokenFile", "bearerTokenSecret", "authorization", "honorLabels",
               "honorTimestamps", "trackTimestampsStaleness", "basicAuth", "oauth2", "metricRelabelings",
               "relabelings", "proxyUrl", "noProxy", "proxyFromEnvironment", "proxyConnectHeader",
               "followRedirects", "enableHttp2", "filterRunning"}
def check_service_monitor(label, sm):
    check((sm.get("apiVersion"), sm.get("kind")) == ("monitoring.coreos.com/v1", "ServiceMonitor"),
          f"{label}: not a monitoring.coreos.com/v1 ServiceMonitor")
    check(set(sm) <= {"apiVersion", "kind", "metadata", "spec"}, f"{label}: unknown top-level fields {set(sm)}")
    check(sm["metadata"].get("namespace") == kust["namespace"], f"{label}: not in namespace {kust['namespace']}")
    spec = sm.get("spec", {})
    check(set(spec) <= SM_SPEC, f"{label}: unknown spec fields {set(spec) - SM_SPEC}")
    check(spec.get("namespaceSelector", {}).get("matchNames") == [kust["namespace"]],
          f"{label}: namespaceSelector is not [{kust['namespace']}]")
    want = spec.get("selector", {}).get("matchLabels", {})
    services = [s for s in by_kind.get("Service", [])
                if want and all(s["metadata"].get("labels", {}).get(k) == v for k, v in want.items())]
    check(len(services) == 1, f"{label}: selects {len(services)} Services, not the metrics one")
    ports = {p.get("name") for s in services for p in s["spec"]["ports"]}
    targets = {p.get("targetPort") for s in services for p in s["spec"]["ports"]}
    check("admin" in targets, f"{label}: the selected Service does not reach the admin port")
    endpoints = spec.get("endpoints", [])
    check(len(endpoints) >= 1, f"{label}: no endpoints")
    for e in endpoints:
        check(set(e) <= SM_ENDPOINT, f"{label}: unknown endpoint fields {set(e) - SM_ENDPOINT}")
        check(e.get("port") in ports, f"{label}: endpoint port {e.get('port')!r} is not a port name of {sorted(ports)}")
        check(e.get("path") == "/metrics", f"{label}: endpoint path is not /metrics")
        for key in ("interval", "scrapeTimeout"):
            check(re.fullmatch(r"\d+(ms|s|m)", str(e.get(key, "30s"))), f"{label}: {key} {e.get(key)!r} is not a duration")
        auth = e.get("authorization")
        if auth is not None:
            creds = auth.get("credentials", {})
            check(auth.get("type") == "Bearer" and set(creds) == {"name", "key"},
                  f"{label}: authorization is not a Bearer token from a Secret key")
            # The Secret deployment.yaml's admin-token volume names.
            text = open(os.path.join(root, "deployment.yaml")).read()
            check(f"secretName: {creds.get('name')}" in text, f"{label}: Secret {creds.get('name')} is not the admin token's")
sm_path = os.path.join(root, "servicemonitor.yaml")
check(os.path.exists(sm_path), "deploy/kubernetes/servicemonitor.yaml is missing")
if os.path.exists(sm_path):
    text = open(sm_path).read()
    check_service_monitor("servicemonitor.yaml", yaml.safe_load(text))
    # The block: a "# --- admin token" note ending in "---", then commented YAML up to the
    # first line that is not a comment.
    state, lines = "off", []
    for line in text.splitlines():
        if re.match(r"\s*# --- admin token", line):
            state = "note"
        elif state != "off" and re.match(r"\s*# ", line):
            if state == "yaml":
                line = line.replace("# ", "", 1)
        else:
            state = "off"
        if state == "note" and line.rstrip().endswith("---"):
            state = "yaml"
        lines.append(line)
    variant = yaml.safe_load("\n".join(lines))
    endpoint = variant["spec"]["endpoints"][0]
    check("authorization" in endpoint, "servicemonitor.yaml: the admin-token block was not found")
    check_service_monitor("servicemonitor.yaml (admin token on)", variant)

# The Deployment's literal environment, for the stsvend check below.
with open(os.path.join(work, "env"), "w") as out:
    for e in container.get("env", []):
        if "value" in e:
            out.write(f"{e['name']}={e['value']}\n")

if errors:
    for e in errors:
        print("FAILED:", e, file=sys.stderr)
    sys.exit(1)
print(f"ok: {len(docs)} resources in {len(present)} files, all listed in kustomization.yaml and consistent")
PY

echo "== the ConfigMap's stsvend.toml and the Deployment's environment, read by stsvend check"
bin=${STSVEND_BIN:-target/debug/stsvend}
if [ -z "${STSVEND_BIN:-}" ]; then
  cargo build --locked --quiet --bin stsvend
fi
mapfile -t deploy_env <"$work/env"
mkdir -p "$work/home"
rc=0
out=$(env -i HOME="$work/home" "${deploy_env[@]}" \
  ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tValidateK8sOnly \
  ALIBABA_CLOUD_ACCESS_KEY_SECRET=not-a-real-secret \
  ALIBABA_CLOUD_ECS_METADATA_DISABLED=true \
  ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true \
  "$bin" check --config "$work/stsvend.toml" 2>&1) || rc=$?
printf '%s\n' "$out" | sed 's/^/  /'
if [ "$rc" -ne 0 ] || ! printf '%s\n' "$out" | grep -q '^settings: OK'; then
  echo "FAILED: stsvend check rejected the ConfigMap or the Deployment's environment (exit $rc)" >&2
  exit 1
fi

echo "== fleet overlay $FLEET: the patched Deployment, Valkey, the Secret template, and their references"
mkdir -p "$work/fleet"
"$VENV/bin/python" - "$MANIFESTS" "$FLEET" "$work" <<'PY'
import copy, os, re, sys, yaml

base_dir, fleet_dir, work = sys.argv[1:4]
out_dir = os.path.join(work, "fleet")
errors = []
def check(ok, message):
    if not ok:
        errors.append(message)
def load_all(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]
def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

def merge(base, patch):
    """A strategic merge patch as kustomize applies it to these fields: maps merge, lists of
    named maps (containers, env, volumeMounts, volumes, ports) merge by name, other lists replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if (isinstance(base, list) and isinstance(patch, list) and patch
            and all(isinstance(i, dict) and "name" in i for i in base + patch)):
        out = [copy.deepcopy(i) for i in base]
        for item in patch:
            at = [n for n, b in enumerate(out) if b["name"] == item["name"]]
            if at:
                out[at[0]] = merge(out[at[0]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)

base_kust = yaml.safe_load(open(os.path.join(base_dir, "kustomization.yaml")))
kust = yaml.safe_load(open(os.path.join(fleet_dir, "kustomization.yaml")))
check(kust.get("namespace") == base_kust["namespace"], "fleet kustomization namespace differs from the base's")
resources = kust.get("resources", [])
base_ref = os.path.relpath(base_dir, fleet_dir)
check(base_ref in resources, f"fleet kustomization does not build on {base_ref}")
patch_files = [p["path"] for p in kust.get("patches", [])]
present = sorted(f for f in os.listdir(fleet_dir) if f.endswith(".yaml") and f != "kustomization.yaml")
for f in present:
    check(f in resources or f in patch_files or f.endswith(".example.yaml"),
          f"{f} is neither a resource, a patch nor an .example.yaml template")
for f in resources + patch_files:
    check(os.path.exists(os.path.join(fleet_dir, f)), f"fleet kustomization names {f}, which does not exist")

# The base Deployment with the patches merged.
[deploy] = [d for f in os.listdir(base_dir) if f.endswith(".yaml") and f != "kustomization.yaml"
            for d in load_all(os.path.join(base_dir, f)) if d["kind"] == "Deployment"]
for f in patch_files:
    for patch in load_all(os.path.join(fleet_dir, f)):
        check((patch["kind"], patch["metadata"]["name"]) == ("Deployment", deploy["metadata"]["name"]),
              f"{f} patches {patch['kind']}/{patch['metadata']['name']}, not the base Deployment")
        deploy = merge(deploy, {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")})
with open(os.path.join(out_dir, "deployment.yaml"), "w") as out:
    yaml.safe_dump(deploy, out, sort_keys=False)

docs = []
for f in [r for r in resources if r != base_ref] + [f for f in present if f.endswith(".example.yaml")]:
    for doc in load_all(os.path.join(fleet_dir, f)):
        docs.append((f, doc))
        check(doc["metadata"].get("namespace") == kust["namespace"], f"{f}: {doc['kind']}/{doc['metadata']['name']} not in namespace {kust['namespace']}")
    with open(os.path.join(out_dir, f), "w") as out:
        out.write(open(os.path.join(fleet_dir, f)).read())
def of_kind(kind):
    return [d for _, d in docs if d["kind"] == kind]

pod = deploy["spec"]["template"]["spec"]
pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
[container] = pod["containers"]
env = {e["name"]: e.get("value") for e in container.get("env", [])}
check("STSVEND_REPLICA_ID" not in env, "STSVEND_REPLICA_ID is set; it should default to the pod's name")
check(pod.get("enableServiceLinks") is False,
      "enableServiceLinks is not false: Service stsvend-valkey would inject STSVEND_VALKEY_* variables, which stsvend refuses")
for name in ("STSVEND_REDIS_URL", "STSVEND_REDIS_ENCRYPTION_KEY_FILE", "STSVEND_FLEET_SIZE_HINT"):
    check(env.get(name), f"the patched Deployment does not set {name}")

# URL -> a Service of the overlay -> its pods (not stsvend's) -> the container port.
m = re.match(r"^rediss?://(?:[^@/]*@)?([^:/]+):(\d+)(/\d+)?$", env.get("STSVEND_REDIS_URL") or "")
check(m, f"STSVEND_REDIS_URL {env.get('STSVEND_REDIS_URL')!r} is not redis://host:port")
services = {s["metadata"]["name"]: s for s in of_kind("Service")}
svc = services.get(m.group(1)) if m else None
check(svc is not None, f"STSVEND_REDIS_URL names no Service of the overlay ({sorted(services)})")
valkeys = [d for d in of_kind("Deployment")]
check(len(valkeys) == 1, f"expected one Valkey Deployment, found {len(valkeys)}")
if svc and valkeys:
    v = valkeys[0]
    vpod = v["spec"]["template"]["spec"]
    vlabels = v["spec"]["template"]["metadata"]["labels"]
    check(selects(v["spec"]["selector"]["matchLabels"], vlabels), "Valkey Deployment selector does not match its pod labels")
    check(selects(svc["spec"]["selector"], vlabels), f"Service {svc['metadata']['name']} does not select the Valkey pods")
    [vc] = vpod["containers"]
    vports = {p["name"]: p["containerPort"] for p in vc.get("ports", [])}
    [sport] = [p for p in svc["spec"]["ports"] if str(p["port"]) == m.group(2)] or [None]
    check(sport is not None, f"Service {svc['metadata']['name']} has no port {m.group(2)}")
    if sport:
        target = sport.get("targetPort", sport["port"])
        check(target in vports or target in vports.values(), f"Service targets unknown port {target}")
    # The base's selectors (Services, PDB, NetworkPolicy, HPA's Deployment) must not pick Valkey up.
    base_selector = deploy["spec"]["selector"]["matchLabels"]
    check(not selects(base_selector, vlabels), "Valkey pods carry stsvend's labels (the base's Services and PDB would select them)")
    sc, psc = vc.get("securityContext", {}), vpod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is True, "Valkey: runAsNonRoot is not set")
    check(sc.get("readOnlyRootFilesystem") is True, "Valkey: readOnlyRootFilesystem is not true")
    check(sc.get("allowPrivilegeEscalation") is False, "Valkey: allowPrivilegeEscalation is not false")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "Valkey: capabilities are not all dropped")
    limits = vc.get("resources", {}).get("limits", {})
    check("memory" in limits and "cpu" in limits, "Valkey: no resource limits")
    args = vc.get("args", [])
    def arg(flag):
        return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None
    check(arg("--save") == "" and arg("--appendonly") == "no", "Valkey: persistence is not off (--save \"\" --appendonly no)")
    mm, lim = arg("--maxmemory"), limits.get("memory", "")
    units = {"mb": 10**6, "gb": 10**9, "Mi": 2**20, "Gi": 2**30}
    def size(text):
        mm_ = re.match(r"^(\d+)(mb|gb|Mi|Gi)$", text or "")
        return int(mm_.group(1)) * units[mm_.group(2)] if mm_ else None
    check(size(mm) and size(lim) and size(mm) < size(lim), f"Valkey: --maxmemory {mm} is not below the memory limit {lim}")
    check(arg("--maxmemory-policy", ) in ("volatile-lru", "volatile-lfu", "volatile-ttl", "volatile-random", "noeviction"),
          "Valkey: --maxmemory-policy could evict the kill switch's state (keys without a TTL)")
    nps = [n for n in of_kind("NetworkPolicy") if selects(n["spec"]["podSelector"]["matchLabels"], vlabels)]
    check(len(nps) == 1, "no NetworkPolicy selects the Valkey pods")
    for n in nps:
        rules = n["spec"].get("ingress", [])
        check(rules and all(r.get("from") and all(
                  "namespaceSelector" not in f and selects(f.get("podSelector", {}).get("matchLabels"), pod_labels)
                  for f in r["from"]) for r in rules),
              f"NetworkPolicy {n['metadata']['name']} admits more than stsvend's pods")
        ports = {p["port"] for r in rules for p in r.get("ports", [])}
        check(ports and all(p in vports.values() or p in vports for p in ports), f"NetworkPolicy ports {ports} are not Valkey's")

# Key file -> a mounted Secret volume -> a key of the Secret template.
key_file = env.get("STSVEND_REDIS_ENCRYPTION_KEY_FILE") or ""
mounts = {mt["mountPath"]: mt for mt in container.get("volumeMounts", [])}
volumes = {vol["name"]: vol for vol in pod.get("volumes", [])}
mount = mounts.get(os.path.dirname(key_file))
check(mount is not None, f"{key_file} is not in a mounted directory ({sorted(mounts)})")
if mount:
    vol = volumes.get(mount["name"], {})
    check("secret" in vol, f"{key_file} is not in a Secret volume")
    secrets = {s["metadata"]["name"]: s for s in of_kind("Secret")}
    secret = secrets.get(vol.get("secret", {}).get("secretName"))
    check(secret is not None, f"no Secret template for {vol.get('secret', {}).get('secretName')} ({sorted(secrets)})")
    if secret:
        keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
        check(os.path.basename(key_file) in keys, f"the Secret template has no key {os.path.basename(key_file)}")
    check(pod.get("securityContext", {}).get("fsGroup") == 65532, "the Secret file is not readable through fsGroup 65532")
# Every mount point is distinct from and not inside another (the config mount is a ConfigMap).
paths = sorted(mounts)
for a in paths:
    for b in paths:
        check(a == b or not b.startswith(a.rstrip("/") + "/"), f"volume mount {b} is inside {a}")

with open(os.path.join(work, "fleet-env"), "w") as out:
    for e in container.get("env", []):
        if "value" in e:
            out.write(f"{e['name']}={e['value']}\n")

if errors:
    for e in errors:
        print("FAILED:", e, file=sys.stderr)
    sys.exit(1)
print(f"ok: the base Deployment with {len(patch_files)} patch(es) merged, {len(docs)} resources of the overlay, consistent")
PY

if command -v kubectl >/dev/null 2>&1; then
  echo "== fleet overlay: the merged Deployment is what \`kubectl kustomize $FLEET\` renders"
  kubectl kustomize "$FLEET" >"$work/fleet-kustomize.yaml"
  "$VENV/bin/python" - "$work/fleet-kustomize.yaml" "$work/fleet/deployment.yaml" <<'PY'
import sys, yaml
def norm(x):
    if isinstance(x, dict):
        return {k: norm(v) for k, v in x.items()}
    if isinstance(x, list):
        items = [norm(i) for i in x]
        return sorted(items, key=lambda i: i["name"]) if all(isinstance(i, dict) and "name" in i for i in items) else items
    return x
rendered = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "stsvend"]
ours = yaml.safe_load(open(sys.argv[2]))
if len(rendered) != 1 or norm(rendered[0]["spec"]) != norm(ours["spec"]):
    sys.exit("FAILED: kubectl kustomize renders a different stsvend Deployment than this script's merge")
print("ok: same Deployment spec")
PY
else
  echo "note: kubectl not installed; the patch merge is this script's own (no cross-check with kustomize)"
fi

for version in $K8S_VERSIONS; do
  echo "== Kubernetes $version, strict: $FLEET (patched Deployment, Valkey, NetworkPolicy, Secret template)"
  validate "$FLEET" "$version" "$work/fleet/"*.yaml
done

echo "== the fleet overlay's environment, read by stsvend check (a local redis-server stands in for Valkey)"
command -v redis-server >/dev/null || { echo "FAILED: redis-server is not installed (apt-get install -y redis-server)" >&2; exit 1; }
port=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 50); do
  if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
  sleep 0.1
done
openssl rand -base64 32 >"$work/encryption-key"
# The Service's name and the Secret's mount point, mapped to this machine.
mapfile -t fleet_env < <(sed \
  -e "s|^STSVEND_REDIS_URL=.*|STSVEND_REDIS_URL=redis://127.0.0.1:$port|" \
  -e "s|^\(STSVEND_REDIS_ENCRYPTION_KEY_FILE\)=.*|\1=$work/encryption-key|" "$work/fleet-env")
rc=0
out=$(env -i HOME="$work/home" HOSTNAME=stsvend-7d9f8c6b5-x2x4q "${fleet_env[@]}" \
  ALIBABA_CLOUD_ACCESS_KEY_ID=LTAI5tValidateK8sOnly \
  ALIBABA_CLOUD_ACCESS_KEY_SECRET=not-a-real-secret \
  ALIBABA_CLOUD_ECS_METADATA_DISABLED=true \
  ALIBABA_CLOUD_CLI_PROFILE_DISABLED=true \
  "$bin" check --config "$work/stsvend.toml" 2>&1) || rc=$?
printf '%s\n' "$out" | sed 's/^/  /'
if [ "$rc" -ne 0 ] || ! printf '%s\n' "$out" | grep -q '^settings: OK' \
   || ! printf '%s\n' "$out" | grep -q "^fleet store redis://127.0.0.1:$port as replica stsvend-7d9f8c6b5-x2x4q: OK"; then
  echo "FAILED: stsvend check rejected the fleet overlay's environment (exit $rc)" >&2
  exit 1
fi

echo "== Kubernetes manifests and the fleet overlay valid for $K8S_VERSIONS"
