#!/usr/bin/env bash
# The whole test suite, from a fresh clone: Rust unit and integration tests, the signature
# vectors (Alibaba Cloud RPC, Alipay RSA2), credential-chain decisions and credentials-file
# readings re-derived with the official SDKs, and the end-to-end test with the real @aliyun-sls
# npm packages. Needs cargo, python3 (with venv) and node/npm; fetches crates, PyPI and npm
# packages on first run, and installs Debian's redis-server if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# The fleet tests (tests/fleet) start their own redis-server from Debian's package.
if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server (Debian package) for the fleet tests"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends redis-server
fi

echo "== cargo test"
cargo test --locked --all-targets

# Each generator runs in its own virtualenv with its pinned requirements.
venv_python() {
  local venv=$1 requirements=$2
  # Marked complete only once pip succeeded, so a run cut short (a full disk, a lost network)
  # is redone rather than reused half-installed.
  if [ ! -f "$venv/.installed" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || return 1
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2 || {
      echo "scripts/test.sh: installing $requirements into $venv failed" >&2
      return 1
    }
    touch "$venv/.installed"
  fi
  echo "$venv/bin/python"
}

echo "== signature vectors: the committed fixture equals what the official SDK produces"
"$(venv_python target/sigvenv scripts/requirements.txt)" scripts/gen_signature_vectors.py --check

echo "== Alipay RSA2 vectors: the committed fixture equals what alipay-sdk-python produces; npm alipay-sdk agrees"
"$(venv_python target/alipayvenv scripts/requirements-alipay.txt)" scripts/gen_alipay_vectors.py --check
if [ ! -d scripts/alipay-node/node_modules ]; then
  (cd scripts/alipay-node && npm ci --no-audit --no-fund)
fi
node scripts/alipay-node/check_vectors.mjs

echo "== credential chain: the committed decisions equal what alibabacloud_credentials decides"
"$(venv_python target/chainvenv scripts/requirements-chain.txt)" scripts/gen_chain_decisions.py --check

echo "== credentials file: the committed vectors equal what alibabacloud_credentials reads"
"$(venv_python target/chainvenv scripts/requirements-chain.txt)" scripts/gen_ini_vectors.py --check

echo "== end to end with @aliyun-sls/web-sts-plugin"
cargo build --locked --bin stsvend
tests/e2e/run.sh target/debug/stsvend

echo "== JS client helper"
node --test clients/js/

echo "== all tests passed"
