#!/usr/bin/env python3
"""Record how the official Python SDK reads credentials files, for stsvend's parser to match.

Each case is a credentials file made of random tricky pieces (section headers with spaces and
brackets, ``=`` and ``:``, ``#`` and ``;`` anywhere, quotes, ``%%`` and ``%(key)s``, ``[DEFAULT]``,
indentation that continues a value, Unicode and ASCII-separator whitespace, a byte order mark,
``\\n`` / ``\\r\\n`` / ``\\r`` line ends). Each is written to a file and read with the SDK's own
``alibabacloud_credentials.provider.profile._load_ini`` (``configparser.ConfigParser().read``
plus the SDK's cut at ``#`` and strip); the section map it returns, or ``null`` when it raises, is
written to ``tests/fixtures/credentials_ini_vectors.json``. ``src/credentials/configparser.rs``
has a test that parses every case and expects the same map (or an error).

Usage, from the repository root (the same virtualenv as gen_chain_decisions.py):
    /tmp/chainvenv/bin/python3 scripts/gen_ini_vectors.py           # (re)write the fixture
    /tmp/chainvenv/bin/python3 scripts/gen_ini_vectors.py --check   # fail if the fixture differs
Deterministic: a fixed seed. ``configparser`` is Python's; the fixture names the Python version it
was recorded with (3.11), and ``--check`` compares the cases only.
"""

import difflib
import json
import os
import platform
import random
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "credentials_ini_vectors.json"
SEED, CASES = 17, 1200
ATOMS = ["[default]", "[DEFAULT]", "[ s ]", "[a]b]", "[]", "[x]", "k", "K", "key", "=", ":", " = ", " : ", "v",
         "%%", "%(k)s", "%(key)s", "%(x)s", "%", "%(", "#", " #", ";", " ;", "\"q\"", "'q'", " ", "  ", "\t",
         "\u00a0", "\u3000", "\x1c", "é", "Σ", "\ufeff", "a b"]


def case_text(rng):
    def some(most):
        return "".join(rng.choice(ATOMS) for _ in range(rng.randint(0, most)))

    def line():  # half of them shaped like `key = value`, so that more files are read
        if rng.random() < 0.5:
            return some(2) + rng.choice(["k", "Key", "a b"]) + rng.choice(["=", " = ", ":"]) + some(3)
        return some(5)
    # Most cases open with a section, so that more of them get past the first line.
    lines = [rng.choice(["[default]", "[x]", "[DEFAULT]", " [default]", "key = v"])]
    lines += [line() for _ in range(rng.randint(0, 6))]
    newline = rng.choice(["\n", "\r\n", "\r"])
    return newline.join(lines) + rng.choice(["", newline])


def generate():
    from alibabacloud_credentials.provider.profile import _load_ini
    from importlib.metadata import version
    rng = random.Random(SEED)
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "credentials.ini")
        for _ in range(CASES):
            text = case_text(rng)
            with open(path, "w", encoding="utf-8", newline="") as f:  # bytes as generated
                f.write(text)
            try:
                sections = _load_ini(path)
            except Exception:  # the SDK's provider fails, and its chain moves on
                sections = None
            cases.append({"text": text, "sections": sections})
    parsed = sum(1 for c in cases if c["sections"] is not None)
    print(f"{len(cases)} cases, {parsed} read, {len(cases) - parsed} refused")
    doc = {"generator": "scripts/gen_ini_vectors.py", "sdk": f"alibabacloud_credentials=={version('alibabacloud_credentials')}",
           "python": platform.python_version(), "cases": cases}
    return doc


def dump(doc):
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main(argv):
    if argv[1:] not in ([], ["--check"]):
        sys.exit(f"usage: {argv[0]} [--check]")
    doc = generate()
    if argv[1:] == ["--check"]:
        current = json.loads(FIXTURE.read_text()) if FIXTURE.exists() else {"cases": []}
        if current.get("python") != doc["python"]:
            print(f"note: recorded with Python {current.get('python')}, checking with {doc['python']}")
        if current["cases"] != doc["cases"] or current.get("sdk") != doc["sdk"]:
            diff = difflib.unified_diff(dump(current).splitlines(), dump(doc).splitlines(), "committed", "generated",
                                        lineterm="")
            sys.exit(f"{FIXTURE.relative_to(REPO_ROOT)} is out of date; rerun scripts/gen_ini_vectors.py\n"
                     + "\n".join(list(diff)[:60]))
        print(f"{FIXTURE.relative_to(REPO_ROOT)} is up to date")
        return
    FIXTURE.write_text(dump(doc))
    print(f"wrote {FIXTURE.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main(sys.argv)
