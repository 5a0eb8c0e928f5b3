"""Formats bench/run.sh's measurements as one Markdown report: the table, the ratios against the
targets of issue 7, the scenarios, and the machine. Standard library only."""

import datetime
import json
import os
import statistics
import sys

(rows_file, scenarios_file, cores, cpu, mem_gib, rustc, duration, gunicorn_workers,
 server_cpus, load_cpus, rounds) = sys.argv[1:12]


def load(path):
    if not os.path.exists(path):  # no rows with BENCH_ONLY=per-user
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


rows = load(rows_file)
scenarios = {s["scenario"]: s for s in load(scenarios_file)}


def rate(w):
    return w["requests"] / (w["duration_us"] / 1e6) if w["duration_us"] else 0.0


def errors(w):
    return w["socket_errors"] + w["non_2xx"]


def ms(us):
    return f"{us / 1000:.2f}"


def verdict(ok):
    return "met" if ok else "**NOT MET**"


def per_user_line(p):
    """The per-user scenario: the first requests, then the cached path's server CPU per request
    against the shared-token path's (medians over the alternating rounds; the ratio is the median
    of each round's ratio, as for the ceiling)."""
    d = p["drive"]
    runs = {}
    for r in p["cpu"]:
        runs.setdefault(r["server"], []).append(r)

    def cpu_ms_per_1000(rs):
        per = [1e6 * r["cpu_ticks"] / p["clk_tck"] / r["wrk"]["requests"] for r in rs if r["wrk"]["requests"]]
        return statistics.median(per) if per else 0.0

    cached, shared = runs.get("per-user-cached", []), runs.get("shared", [])
    c, s_ = cpu_ms_per_1000(cached), cpu_ms_per_1000(shared)
    shared_by_round = {r["round"]: r for r in shared}
    ratios = [cpu_ms_per_1000([r]) / cpu_ms_per_1000([shared_by_round[r["round"]]])
              for r in cached
              if r["round"] in shared_by_round and cpu_ms_per_1000([shared_by_round[r["round"]]])]
    ratio = statistics.median(ratios) if ratios else float("inf")
    rounds = ", ".join(f"{x:.2f}" for x in ratios)
    c_rate = statistics.median(rate(r["wrk"]) for r in cached) if cached else 0
    s_rate = statistics.median(rate(r["wrk"]) for r in shared) if shared else 0
    c_errors = sum(errors(r["wrk"]) for r in cached)
    return (f"- **Per-user** (`jwt` mode, RS256 from a JWKS file, {p['subjects']} distinct subjects, 64 at a time, budget "
            f"{p['budget']}/s): {p['sts']['calls']} STS calls for {p['subjects']} subjects, at most "
            f"{p['sts']['max_calls_in_one_second']} in any one second "
            f"({verdict(p['sts']['max_calls_in_one_second'] <= p['budget'])}); {d['ok']} tokens in {d['seconds']:.1f} s, "
            f"{d['errors']} errors, {d['retries']} retries after 429/503. Afterwards, the cached path (each JWT "
            f"remembered after its first verification), at 50 connections, medians of {len(cached)} rounds "
            f"alternating with a shared-token (`none` mode) server: {c:.1f} ms of server CPU per 1000 requests "
            f"against {s_:.1f} for the shared token, **{ratio:.2f} x** (rounds {rounds}; target <= 1.3: "
            f"{verdict(ratio <= 1.3)}); "
            f"{c_rate:,.0f} against {s_rate:,.0f} req/s; {c_errors} errors, {p['cached_sts']['calls']} STS calls.")


out = []
print_ = out.append
if not rows:  # bench/run.sh with BENCH_ONLY=per-user: the machine and that scenario only
    print(f"Machine: {cores} cores ({cpu}), {mem_gib} GiB; {rustc}. Servers pinned to CPU {server_cpus}, "
          f"wrk and the mock STS to CPU {load_cpus}. Date: {datetime.date.today().isoformat()}. "
          f"Each load run: {duration} s after a warm-up.")
    print(per_user_line(scenarios["per-user"]))
    sys.exit(0)
print_(f"Machine: {cores} cores ({cpu}), {mem_gib} GiB; {rustc}. Servers pinned to CPU {server_cpus}, "
       f"wrk and the mock STS to CPU {load_cpus}.")
print_(f"Date: {datetime.date.today().isoformat()}. Each load run: {duration} s after a warm-up; ceiling and "
       f"stsvend rows are medians of {rounds} alternating rounds; mock STS latency "
       f"{scenarios.get('startup', {}).get('sts_latency_ms', '?')} ms.")
print_("")
print_("| server | connections | req/s | p50 ms | p99 ms | errors | STS calls per 1000 req | peak RSS MiB "
       "| server CPU ms per 1000 req |")
print_("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

# Medians over the rounds of each (server, connections); errors and STS calls summed.
groups = {}
for r in rows:
    groups.setdefault((r["server"], r["connections"]), []).append(r)
by = {}
for key, rs in groups.items():
    requests = sum(r["wrk"]["requests"] for r in rs)
    by[key] = {
        "rate": statistics.median(rate(r["wrk"]) for r in rs),
        "p50": statistics.median(r["wrk"]["p50_us"] for r in rs),
        "p99": statistics.median(r["wrk"]["p99_us"] for r in rs),
        "errors": "wrk hung" if any(r["wrk"].get("hung") for r in rs) else sum(errors(r["wrk"]) for r in rs),
        "per_1000": 1000 * sum(r["sts"]["calls"] for r in rs) / requests if requests else 0,
        "rss": max(r["peak_rss_kib"] for r in rs) / 1024,
        # Server CPU (user + system) per 1000 requests answered, the median over the rounds.
        "cpu": statistics.median(1000 * r.get("cpu_ms", 0) / r["wrk"]["requests"] if r["wrk"]["requests"] else 0
                                 for r in rs),
    }
def per_round(row, what):
    requests = row["wrk"]["requests"]
    if what == "rate":
        return rate(row["wrk"])
    return 1000 * row.get("cpu_ms", 0) / requests if requests else 0


def round_ratios(server, conns, what):
    """The median over rounds of `server`'s figure divided by the ceiling's in the same round,
    and the rounds' ratios as text: a host whose speed drifts moves both runs of a round alike."""
    ceiling = {r["round"]: r for r in groups.get(("ceiling", conns), [])}
    ratios = []
    for r in groups.get((server, conns), []):
        c = ceiling.get(r["round"])
        base = per_round(c, what) if c else 0
        if base:
            ratios.append(per_round(r, what) / base)
    if not ratios:
        return 0.0, "-"
    return statistics.median(ratios), ", ".join(f"{x:.2f}" for x in ratios)


order = ["ceiling", "stsvend", "stsvend-no-audit", "sample-flask", "sample-gunicorn"]
for (server, conns), m in sorted(by.items(), key=lambda kv: (kv[0][1], order.index(kv[0][0]))):
    print_(f"| {server} | {conns} | {m['rate']:,.0f} | {ms(m['p50'])} | {ms(m['p99'])} | {m['errors']} "
           f"| {m['per_1000']:.2f} | {m['rss']:.1f} | {m['cpu']:.2f} |")
print_("")
print_(f"stsvend-no-audit is stsvend with its audit lines off (`RUST_LOG=stsvend::audit=off,info`). "
       f"sample-flask is Alibaba's sample under Flask's development server, as the guide runs it; "
       f"sample-gunicorn the same app under gunicorn (gthread, {gunicorn_workers} workers x 8 threads).")
print_("")
print_("| connections | stsvend / ceiling req/s (target >= 0.95) | stsvend / ceiling p99 (target <= 1.5) "
       "| stsvend / sample-flask req/s (target >= 200) | stsvend / sample-gunicorn req/s | stsvend peak RSS (target <= 20 MiB) |")
print_("| ---: | ---: | ---: | ---: | ---: | ---: |")
for conns in sorted({c for (_, c) in by}):
    s, c = by.get(("stsvend", conns)), by.get(("ceiling", conns))
    f, g = by.get(("sample-flask", conns)), by.get(("sample-gunicorn", conns))
    if not (s and c and f and g):
        continue
    thr = s["rate"] / c["rate"] if c["rate"] else 0
    p99 = s["p99"] / c["p99"] if c["p99"] else 0
    vs_f = s["rate"] / f["rate"] if f["rate"] else float("inf")
    vs_g = s["rate"] / g["rate"] if g["rate"] else float("inf")
    print_(f"| {conns} | {thr:.3f} ({verdict(thr >= 0.95)}) | {p99:.2f} ({verdict(p99 <= 1.5)}) "
           f"| {vs_f:,.0f} ({verdict(vs_f >= 200)}) | {vs_g:,.0f} | {s['rss']:.1f} ({verdict(s['rss'] <= 20)}) |")
print_("")

print_("Issue 18, the cached shared token against the ceiling (ratios within this run):")
print_("")
print_("| connections | CPU per 1000 req (target <= 1.3) | req/s (target >= 0.85) | p99 (target <= 1.5) "
       "| peak RSS MiB (target <= 16 at 256) | no audit: CPU, req/s |")
print_("| ---: | ---: | ---: | ---: | ---: | ---: |")
for conns in sorted({c for (_, c) in by}):
    s, c, q = by.get(("stsvend", conns)), by.get(("ceiling", conns)), by.get(("stsvend-no-audit", conns))
    if not (s and c):
        continue
    cpu, cpu_rounds = round_ratios("stsvend", conns, "cpu")
    thr, thr_rounds = round_ratios("stsvend", conns, "rate")
    p99 = s["p99"] / c["p99"] if c["p99"] else 0
    rss = verdict(s["rss"] <= 16) if conns >= 256 else "-"
    quiet = "-"
    if q:
        quiet = f"{round_ratios('stsvend-no-audit', conns, 'cpu')[0]:.2f}, {round_ratios('stsvend-no-audit', conns, 'rate')[0]:.2f}"
    print_(f"| {conns} | {cpu:.2f} ({cpu_rounds}; {verdict(cpu <= 1.3)}) "
           f"| {thr:.2f} ({thr_rounds}; {verdict(thr >= 0.85)}) | {p99:.2f} ({verdict(p99 <= 1.5)}) "
           f"| {s['rss']:.1f} ({rss}) | {quiet} |")
print_("")
print_("CPU and req/s ratios are medians of each round's ratio (stsvend's run against the ceiling's "
       "run just before it, so the two share the host's speed of that moment); the rounds' ratios "
       "are in brackets. `bench/pair.sh` measures the two at the same time, to about 1 %.")
print_("")

o = scenarios.get("outage")
if o:
    w = o["wrk"]
    steady = by.get(("stsvend", 50))
    share = f"{rate(w) / steady['rate']:.2f} x steady state at 50 connections" if steady else ""
    print_(f"- **STS outage** (every AssumeRole answered 503 while the token in hand is due for renewal): "
           f"{rate(w):,.0f} req/s ({share}), {errors(w)} errors, p99 {ms(w['p99_us'])} ms; "
           f"the refresher tried STS {o['sts']['calls']} times in {duration} s (backoff, no retry storm).")
h = scenarios.get("herd")
if h:
    d = h["drive"]
    print_(f"- **Herd** ({h['clients']} concurrent first requests at a cold start, STS latency "
           f"{h['sts_latency_ms']} ms): {h['sts']['calls']} STS call(s) (target 1), {d['ok']} answered 200, "
           f"{d['errors']} errors, p50 {d['p50_ms']:.0f} ms, p99 {d['p99_ms']:.0f} ms.")
p = scenarios.get("per-user")
if p:
    print_(per_user_line(p))
s = scenarios.get("startup")
if s:
    d = s["drive"]
    first = d["first_200_ms"]
    if first is None:
        print_("- **Start-up**: no 200 within 10 s.")
    else:
        print_(f"- **Start-up**: first 200 after {first:.0f} ms from process start "
               f"({first - s['sts_latency_ms']:.0f} ms without the STS round trip); idle RSS "
               f"{d['idle_rss_kib'] / 1024:.1f} MiB.")

print("\n".join(out))
