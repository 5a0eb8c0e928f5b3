#!/usr/bin/env bash
# Validates deploy/kubernetes/ offline (PyPI only: kubernetes-validate ships the schemas):
#   1. every manifest against the Kubernetes API schemas of each version in K8S_VERSIONS, strict
#      (unknown fields are errors, and so is a kind without a schema);
#   2. the same with the commented-out alternatives (manual RRSA token volume, native HTTPS)
#      switched on, so the documented variants stay valid too;
#   3. the references between the manifests (kustomization resources, namespace, names,
#      selectors, named ports, ServiceAccount, ConfigMap);
#   4. the ConfigMap's stsvend.toml and the Deployment's environment with `stsvend check`
#      (no network: fake static credentials, the metadata service switched off).
# Usage: scripts/validate_k8s.sh            (K8S_VERSIONS="1.30.0 1.33.0" by default)
#        STSVEND_BIN=path/to/stsvend ...   (else target/debug/stsvend, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSIONS=${K8S_VERSIONS:-"1.30.0 1.33.0"}
MANIFESTS=deploy/kubernetes
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
trap 'rm -rf "$work"' EXIT

# Every manifest except the kustomization (not a Kubernetes API kind; checked in step 3).
mapfile -t files < <(find "$MANIFESTS" -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml | sort)
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
  printf '%s\n' "$out" | sed "s|$work/variant/|variant:|"
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
import os, sys, yaml

root, work = sys.argv[1], sys.argv[2]
errors = []
def check(ok, message):
    if not ok:
        errors.append(message)

kust = yaml.safe_load(open(os.path.join(root, "kustomization.yaml")))
listed = kust.get("resources", [])
present = sorted(f for f in os.listdir(root) if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml")
for f in listed:
    check(os.path.exists(os.path.join(root, f)), f"kustomization lists {f}, which does not exist")
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

images = {i["name"] for i in kust.get("images", [])}
check(container["image"].rsplit(":", 1)[0] in images, f"kustomization images do not cover {container['image']}")

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
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
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

echo "== Kubernetes manifests valid for $K8S_VERSIONS"
