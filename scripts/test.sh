#!/usr/bin/env bash
# The whole test suite, from a fresh clone: Rust unit and integration tests, the signature
# fixture re-derived from the official Python SDK, and the end-to-end test with the real
# @aliyun-sls npm packages. Needs cargo, python3 (with venv) and node/npm; fetches crates,
# PyPI and npm packages on first run.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test"
cargo test --locked --all-targets

echo "== signature vectors: the committed fixture equals what the official SDK produces"
venv=target/sigvenv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements.txt
fi
"$venv/bin/python" scripts/gen_signature_vectors.py --check

echo "== end to end with @aliyun-sls/web-sts-plugin"
cargo build --locked --bin stsvend
tests/e2e/run.sh target/debug/stsvend

echo "== all tests passed"
