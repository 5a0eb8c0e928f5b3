#!/usr/bin/env python3
"""Reads a callgrind dump (bench/instructions.sh's kind: N requests between two dumps) and
prints instructions per request: each function's own (self) cost, the difference between two
dumps, or what the calls into some functions cost, by caller.

    scripts/callgrind_costs.py self DUMP N [EVENT]    # the 60 dearest functions, self cost
    scripts/callgrind_costs.py diff DUMP_A DUMP_B N   # what B spends more or less than A
    scripts/callgrind_costs.py callers DUMP N REGEX   # calls into functions matching REGEX

`callers` with `^malloc$` shows which allocations miss glibc's per-thread cache (about 50
instructions a call when they hit, 250-300 for a block over 1,032 bytes); with `memcpy` it shows
who moves large values (README, Performance, "Round 5"). Names are demangled with c++filt when
it is installed. EVENT is one of the dump's events (its `events:` line; default the first, `Ir`):
with `--cache-sim=yes`, `DLmr` ranks who misses the simulated last-level cache (bench/misses.sh).
To get a dump: bench/instructions.sh's steps with the dump file kept (its
`$WORK/cg.out.*` is removed on exit), or any `valgrind --tool=callgrind` run.
"""

import collections
import re
import shutil
import signal
import subprocess
import sys

NAME = re.compile(r"c?fn=\((\d+)\)(?: (.*))?")


def parse(path, event=None):
    """Self cost per function, and (caller, callee) -> [calls, inclusive cost], of `event`
    (default: the dump's first)."""
    column = 1
    names = {}
    own = collections.Counter()
    calls = collections.defaultdict(lambda: [0, 0])
    fn = callee = None
    pending_calls = None
    with open(path, errors="replace") as dump:
        for line in dump:
            if line.startswith("events:") and event is not None:
                events = line.split()[1:]
                if event not in events:
                    sys.exit(f"{path} has no event {event} (it has: {' '.join(events)})")
                column = 1 + events.index(event)
                continue
            if line.startswith(("fn=", "cfn=")):
                match = NAME.match(line.rstrip("\n"))
                if match:
                    if match.group(2):
                        names[match.group(1)] = match.group(2)
                    name = names.get(match.group(1), match.group(1))
                    if line.startswith("fn="):
                        fn = name
                    else:
                        callee = name
                continue
            if line.startswith("calls="):
                pending_calls = int(line.split()[0][len("calls=") :])
                continue
            if not line or not (line[0].isdigit() or line[0] in "+-*"):
                continue
            parts = line.split()
            if len(parts) < 2 or fn is None:
                continue
            # Trailing zero costs are left out of a line.
            cost = int(parts[column]) if len(parts) > column else 0
            if pending_calls is not None:
                # The line after `calls=` is the call's inclusive cost, not the caller's own.
                entry = calls[(fn, callee)]
                entry[0] += pending_calls
                entry[1] += cost
                pending_calls = None
            else:
                own[fn] += cost
    return own, calls


def demangle(names):
    if not names or shutil.which("c++filt") is None:
        return names
    out = subprocess.run(
        ["c++filt"], input="\n".join(names), capture_output=True, text=True, check=False
    ).stdout.split("\n")
    return out[: len(names)] if len(out) >= len(names) else names


def show(rows, n):
    rows = list(rows)
    for (value, extra, name), shown in zip(rows, demangle([r[2] for r in rows])):
        print(f"{value / n:10.1f}{extra}  {shown[:170]}")


def main(argv):
    if len(argv) in (4, 5) and argv[1] == "self":
        own, _ = parse(argv[2], argv[4] if len(argv) == 5 else None)
        n = int(argv[3])
        print(f"{sum(own.values()) / n:10.1f}  total")
        show(((v, "", k) for k, v in own.most_common(60)), n)
    elif len(argv) == 5 and argv[1] == "diff":
        a, _ = parse(argv[2])
        b, _ = parse(argv[3])
        n = int(argv[4])
        print(f"{sum(a.values()) / n:10.1f} -> {sum(b.values()) / n:.1f}  total")
        deltas = sorted(((b[k] - a[k], "", k) for k in set(a) | set(b)), reverse=True)
        show([d for d in deltas[:30] + deltas[-30:] if abs(d[0]) >= 5 * n], n)
    elif len(argv) == 5 and argv[1] == "callers":
        _, calls = parse(argv[2])
        n = int(argv[3])
        wanted = re.compile(argv[4])
        by_caller = collections.defaultdict(lambda: [0, 0])
        for (caller, callee), (count, cost) in calls.items():
            if callee and wanted.search(callee):
                by_caller[caller][0] += count
                by_caller[caller][1] += cost
        rows = sorted(by_caller.items(), key=lambda item: -item[1][1])[:30]
        show(((cost, f" {count / n:6.2f} calls", caller) for caller, (count, cost) in rows), n)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    # Piped into `head`: stop quietly.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main(sys.argv))
