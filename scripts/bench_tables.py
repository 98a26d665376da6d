#!/usr/bin/python3
"""Writes the generated tables of docs/benchmarks.md from the results of
scripts/bench.sh: tally-bench JSON files NAME.REP.json (one per run and
repetition) and tally_micro_bench JSON files NAME.micro.json.

    scripts/bench_tables.py --results DIR [--doc docs/benchmarks.md]
        [--sets "ingest connections"] [--repeat 3]

Each set's table sits between the lines "<!-- bench:SET -->" and
"<!-- /bench:SET -->" of the doc and is replaced whole; a set missing from
the doc is appended at its end; sets not in --sets are left alone. Numbers
are min–max over the repetitions, with the median when there are three or
more; MB = 1e6 bytes, MiB = 2^20.
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys


def load_runs(results):
    """{name: [tally-bench JSON, ...]} in repetition order."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(results, "*.json"))):
        base = os.path.basename(path)
        match = re.fullmatch(r"(.+)\.(\d+)\.json", base)
        if not match or base.endswith(".micro.json"):
            continue
        with open(path) as f:
            runs.setdefault(match.group(1), []).append((int(match.group(2)), json.load(f)))
    return {name: [j for _, j in sorted(reps, key=lambda r: r[0])] for name, reps in runs.items()}


def load_micro(results, name):
    path = os.path.join(results, name + ".micro.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def span(values, fmt="{:.2f}", scale=1.0):
    """'lo–hi (median)' of values times scale; one value alone; '—' if none."""
    values = [v * scale for v in values if v is not None]
    if not values:
        return "—"
    lo, hi = min(values), max(values)
    if fmt.format(lo) == fmt.format(hi):
        text = fmt.format(lo)
    else:
        text = fmt.format(lo) + "–" + fmt.format(hi)
    if len(values) >= 3 and fmt.format(lo) != fmt.format(hi):
        text += " (" + fmt.format(statistics.median(values)) + ")"
    return text


def get(j, path):
    """j["a"]["b"] for path "a.b"; None where missing."""
    for key in path.split("."):
        if not isinstance(j, dict) or j.get(key) is None:
            return None
        j = j[key]
    return j


def col(reps, path, fmt="{:.2f}", scale=1.0):
    return span([get(j, path) for j in reps], fmt, scale)


def server_cpu_per_update(j):
    cpu = get(j, "server.cpu_seconds")
    updates = get(j, "server.updates_accepted")
    return cpu / updates if cpu is not None and updates else None


def cpu_ms_per_update(reps):
    return span([server_cpu_per_update(j) for j in reps], "{:.1f}", 1e3)


def peak_rss(reps):
    return col(reps, "server_peak_rss_bytes", "{:.0f}", 2**-20)


def per_round_cpu(j):
    cpu = get(j, "server.cpu_seconds")
    rounds = get(j, "server.rounds_completed")
    return cpu / rounds if cpu is not None and rounds else None


def latency(reps, key="latency_seconds", fmt="{:.0f}", scale=1e3):
    """'p50 / p99' of a latency over the repetitions (default: PushUpdate, ms)."""
    return (span([get(j, key + ".p50") for j in reps], fmt, scale) + " / " +
            span([get(j, key + ".p99") for j in reps], fmt, scale))


def rows_of(runs, labels, row):
    """[label] + row(repetitions) for each run of `labels` (in order) with results."""
    return [[label] + row(runs[name]) for name, label in labels.items() if name in runs]


def section(intro, runs, names, header, rows, note=""):
    """`intro` (the runs' machine and load after it), the table, `note`."""
    text = intro + " (" + reps_note(runs, names) + "):\n\n" + table(header, rows)
    return text + ("\n\n" + note if note else "")


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def machine_line(runs_or_micro):
    """Date range, CPU, cores, memory and kernel of the runs."""
    dates = sorted(get(j, "machine.date") for reps in runs_or_micro for j in reps
                   if get(j, "machine.date"))
    j = runs_or_micro[0][0]
    m = j["machine"]
    when = dates[0][:10] if dates[0][:10] == dates[-1][:10] else dates[0][:10] + " to " + dates[-1][:10]
    return ("{} UTC, {} cores ({}), {:.0f} GiB, {}; clients and server on the same cores"
            .format(when + " " + dates[0][11:16] + "–" + dates[-1][11:16], m["cores"],
                    m["cpu_model"] or "unknown CPU", m["memory_bytes"] / 2**30, m["kernel"]))


def reps_note(runs, names):
    present = [runs[n] for n in names if n in runs]
    if not present:
        return None
    count = min(len(r) for r in present)
    return "{}; {} interleaved repetition{} of each row, 1-minute load average {} at their starts".format(
        machine_line(present), count, "" if count == 1 else "s",
        span([float(get(j, "machine.loadavg_before").split()[0]) for r in present for j in r],
             "{:.1f}"))


def ingest_set(runs):
    labels = {
        "shared": "one shared connection (gRPC's default for one process)",
        "own": "a connection per client",
        "own_pull": "a connection per client, pull + push",
        "own_callback": "a connection per client, callback driver",
        "own_nobdp": "a connection per client, `grpc { bdp_probe: false }`",
    }
    names = list(labels)

    def row(r):
        pull = get(r[0], "config.pull")
        return [
            col(r, "mb_per_second", "{:.2f}", 1e-3),
            col(r, "upload.mb_per_second", "{:.2f}", 1e-3),
            col(r, "download.mb_per_second", "{:.2f}", 1e-3) if pull else "—",
            col(r, "round.mb_per_second", "{:.2f}", 1e-3) if pull else "—",
            latency(r),
            col(r, "pull_latency_seconds.p50", "{:.0f}", 1e3) if pull else "—",
            span([per_round_cpu(j) for j in r], "{:.2f}"),
            peak_rss(r),
            col(r, "footprint.server_connections_joined", "{:.0f}"),
        ]
    rows = rows_of(runs, labels, row)
    if not rows:
        return None
    return section("**End-to-end ingest**, 10 clients × 10M float32 parameters (40 MB updates), "
        "5 measured rounds after 1 warm-up, 1 MiB chunks, tally-bench starting its own "
        "server with the default config",
        runs, names, ["Clients' connections", "Update ingest GB/s", "Upload phases GB/s",
        "Download phases GB/s", "Whole rounds (down + up) GB/s",
        "PushUpdate p50 / p99 ms", "PullModel p50 ms", "Server CPU s per round",
        "Server peak RSS MiB", "Connections at the server"], rows,
        "Update ingest: update bytes accepted / wall time (first measured call to "
        "the publication of the last round's model; with pull + push it includes the "
        "downloads). Upload / download phases: the bytes over the sum of each round's "
        "first push start to last push end (first pull start to last pull end). Whole "
        "rounds: (downloaded + uploaded bytes) / wall time. Server CPU per round: its "
        "CPU during the load / rounds completed (warm-up included).")


def codecs_set(runs):
    labels = {"own": "float32 (SDK)", "int8": "int8, block 256", "topk": "top-k 1 %"}
    names = list(labels)

    def row(r):
        updates = max(1, get(r[0], "measured.updates_accepted"))
        return [
            "{:,.0f}".format(get(r[0], "measured.bytes_accepted") / updates),
            col(r, "updates_per_second", "{:.1f}"), col(r, "mb_per_second", "{:.2f}", 1e-3),
            col(r, "represented_gb_per_second", "{:.2f}"), latency(r),
            cpu_ms_per_update(r),
            peak_rss(r),
        ]
    rows = rows_of(runs, labels, row)
    if len(rows) < 2:
        return None
    return section("**Compressed uploads**, the same 10 clients × 10M parameters with a connection "
        "each; int8 and top-k run 10 measured rounds, each client's delta encoded once "
        "before the run, so the server's ingest is measured, not the clients' encoders",
        runs, names, ["Upload", "Bytes per update", "Updates/s", "Payload ingest GB/s",
        "Represented float32 GB/s", "PushUpdate p50 / p99 ms",
        "Server CPU ms per update", "Server peak RSS MiB"], rows,
        "Represented float32: 4·d bytes per accepted update / wall time. Server CPU "
        "per update: its CPU during the load / every update accepted (warm-up included, "
        "so each round's optimizer step and publication count too).")


def schedules_set(runs):
    labels = {"fedasync": "`fedasync`", "fedbuff": "`fedbuff` (K = 3)",
              "sync64": "`sync` (rounds of 64)"}
    names = list(labels)
    rows = rows_of(runs, labels, lambda r: [
        col(r, "updates_per_second", "{:.0f}"), col(r, "mb_per_second", "{:.2f}", 1e-3),
        latency(r), cpu_ms_per_update(r),
        peak_rss(r)])
    if not rows:
        return None
    return section("**Asynchronous schedules**, 64 clients each pushing 20 measured updates of 1M "
        "float32 parameters as fast as the server lets them, a connection each; FedAsync "
        "publishes one model version per update, FedBuff one per 3",
        runs, names, ["Schedule", "Updates/s", "Ingest GB/s", "PushUpdate p50 / p99 ms",
        "Server CPU ms per update", "Server peak RSS MiB"], rows)


def relays_set(runs):
    labels = {"single10": "single root", "relays10": "root + 2 relays"}
    names = list(labels)

    def row(r):
        relay_cpu = [sum(x.get("cpu_seconds") or 0 for x in j["relays"]) or None for j in r]
        relay_rss = [max((x.get("peak_rss_bytes") or 0 for x in j["relays"]), default=0) or None
                     for j in r]
        return [
            col(r, "updates_per_second", "{:.1f}"), col(r, "mb_per_second", "{:.2f}", 1e-3),
            latency(r, fmt="{:.2f}", scale=1), col(r, "server.cpu_seconds", "{:.1f}"),
            span(relay_cpu, "{:.1f}"),
            peak_rss(r) + " / " +
            span(relay_rss, "{:.0f}", 2**-20),
        ]
    rows = rows_of(runs, labels, row)
    if not rows:
        return None
    return section("**Relays**, 10 clients × 10M parameters, 3 measured rounds, a connection per "
        "client; with relays the clients are spread round-robin over two relay processes "
        "and the root receives one combined update per relay and round; all processes on "
        "the same cores",
        runs, names, ["Setup", "Updates/s", "Ingest GB/s", "PushUpdate p50 / p99 s",
        "Root CPU s", "Relays' CPU s (both)", "Peak RSS root / relay MiB"], rows)


def connections_set(runs):
    labels = {"conn1k": "1,000", "conn10k": "10,000",
              "conn10k_quota": "10,000, `grpc { memory_bytes: 268435456 }`"}
    names = list(labels)

    def row(r):
        clients = get(r[0], "config.clients")
        return [
            col(r, "updates_per_second", "{:.0f}"), latency(r, fmt="{:.2f}", scale=1),
            col(r, "footprint.server_connections_joined", "{:.0f}"),
            col(r, "footprint.server.joined.fds", "{:.0f}"),
            col(r, "footprint.server.max.threads", "{:.0f}"),
            col(r, "footprint.server.rss_bytes_per_client", "{:.1f}", 2**-10),
            col(r, "footprint.server.joined.rss_bytes", "{:.0f}", 2**-20),
            peak_rss(r),
            span([per_round_cpu(j) for j in r], "{:.2f}"),
            span([clients / get(j, "measured.setup_seconds") for j in r
                  if get(j, "measured.setup_seconds")], "{:.0f}"),
            col(r, "footprint.client.rss_bytes_per_client", "{:.1f}", 2**-10),
        ]
    rows = rows_of(runs, labels, row)
    if not rows:
        return None
    return section("**Connection scale**: K clients with a TCP connection each (tally-bench "
        "`--driver=callback --connection_per_client`: every client a state machine of "
        "gRPC callback calls in one load-generator process), a 10,000-parameter model "
        "(40 KB updates), synchronous rounds of all K, 3 measured rounds after 1 warm-up; "
        "every client joins, long-polls GetTask and pushes once per round, all at the same "
        "moment",
        runs, names, ["Clients K", "Updates/s", "PushUpdate p50 / p99 s", "Connections at the server",
        "Server fds", "Server threads (max)", "Server KiB per connected client",
        "Server RSS all joined MiB", "Server peak RSS MiB", "Server CPU s per round",
        "Joins/s (setup)", "Load generator KiB per client"], rows,
        "Server KiB per connected client: the growth of the server's resident set "
        "from before the clients were created to when all had joined (idle connections "
        "with a session each), / K. Peak RSS is reached when every client pushes at "
        "once. Joins/s: K / the time from the start until the last client joined (256 "
        "Joins in flight at a time).")


def median_entries(micro):
    """{run_name: benchmark entry} of the median aggregates."""
    out = {}
    for b in micro.get("benchmarks", []):
        if b.get("aggregate_name") == "median":
            out[b["run_name"]] = b
    return out


def micro_note(micro):
    ctx = micro["context"]
    return "{}, {} cores, load average {:.1f} at the start".format(
        ctx["date"][:16].replace("T", " "), ctx["num_cpus"], ctx["load_avg"][0])


def kernels_set(results):
    micro = load_micro(results, "kernels")
    if micro is None:
        return None
    m = median_entries(micro)

    def rate(name):
        b = m.get(name)
        return "{:.1f}".format(b["bytes_per_second"] / 1e9) if b else "—"
    rows = [
        ["`StripedAccumulator::AddBytes` (1 MiB chunks into a 10M exact sum), 1 / 2 threads",
         rate("BM_StripedAccumulatorAddBytes/real_time/threads:1") + " / " +
         rate("BM_StripedAccumulatorAddBytes/real_time/threads:2")],
        ["`AllFiniteBytes`, 1 MiB / 40 MB",
         rate("BM_AllFiniteBytes/1048576/real_time") + " / " + rate("BM_AllFiniteBytes/40000000/real_time")],
        ["`AxpyBytes`, 1 MiB / 40 MB",
         rate("BM_AxpyBytes/1048576/real_time") + " / " + rate("BM_AxpyBytes/40000000/real_time")],
    ]
    text = ("**Kernels** (`tally_micro_bench`, medians of 3 repetitions, GB/s of update "
            "bytes; " + micro_note(micro) + "):\n\n")
    return text + table(["Benchmark", "GB/s"], rows)


RULES = ["krum", "multi_krum", "median", "trimmed_mean", "geometric_median", "centered_clipping",
         "meamed", "monna", "nnm_then_average", "nnm_then_trimmed_mean", "flag", "bulyan", "caf"]


def rules_set(results):
    two, one = load_micro(results, "rules2"), load_micro(results, "rules1")
    if two is None:
        return None
    m2 = median_entries(two)
    m1 = median_entries(one) if one else {}

    def ms(m, rule):
        b = m.get("BM_Rule/{}/50/1000000/real_time".format(rule))
        if not b:
            return "—"
        scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
        return "{:.0f}".format(b["real_time"] * scale)
    rows = [["`" + rule + "`", ms(m2, rule), ms(m1, rule)] for rule in RULES]
    text = ("**Robust rules**, n = 50 updates × d = 1e6 float32 (Gaussian rows, f = n/5; "
            "Bulyan (n − 3)/4), ms per aggregation, medians of 3 repetitions ("
            + micro_note(two) + "):\n\n")
    return text + table(["Rule", "tally, 2 threads", "tally, 1 thread"], rows)


CODECS = [("float32", "float32"), ("float16", "float16"), ("bfloat16", "bfloat16"),
          ("int8_b256", "int8 (block 256)"), ("qsgd_s7_b512", "qsgd (s = 7, block 512)"),
          ("sign", "sign"), ("topk_1pc", "topk 1 %, float32 values"),
          ("topk_1pc_f16", "topk 1 %, float16 values"), ("randk_1pc", "randk 1 %"),
          ("spsa_1pair", "spsa, 1 pair"), ("int8_zstd", "int8 + zstd")]


def codecs_micro_set(results):
    micro = load_micro(results, "codecs_micro")
    if micro is None:
        return None
    m = median_entries(micro)

    def rate(kind, codec):
        b = m.get("BM_Codec{}/{}/real_time".format(kind, codec))
        return "{:.2f}".format(b["bytes_per_second"] / 1e9) if b else "—"
    rows = [[label, rate("Encode", c), rate("DecodeAccumulate", c)] for c, label in CODECS]
    text = ("**Codecs** (`tally_micro_bench --benchmark_filter=Codec`, d = 10⁷, one thread, "
            "GB/s of the float32 vector represented, medians of 3 repetitions; "
            + micro_note(micro) + "):\n\n")
    return text + table(["Codec", "Encode GB/s", "Decode-accumulate GB/s"], rows)


def render(set_name, runs, results):
    makers = {"ingest": lambda: ingest_set(runs), "codecs": lambda: codecs_set(runs),
              "schedules": lambda: schedules_set(runs), "relays": lambda: relays_set(runs),
              "connections": lambda: connections_set(runs),
              "kernels": lambda: kernels_set(results), "rules": lambda: rules_set(results),
              "codecs_micro": lambda: codecs_micro_set(results)}
    return makers[set_name]()


def replace_block(doc, set_name, body):
    begin, end = "<!-- bench:{} -->".format(set_name), "<!-- /bench:{} -->".format(set_name)
    block = begin + "\n" + body + "\n" + end
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(doc):
        return pattern.sub(lambda _: block, doc)
    return doc.rstrip("\n") + "\n\n" + block + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", required=True)
    parser.add_argument("--doc", default="docs/benchmarks.md")
    parser.add_argument("--sets", default="ingest codecs schedules relays connections kernels "
                        "rules codecs_micro")
    args = parser.parse_args()
    runs = load_runs(args.results)
    doc = open(args.doc).read() if os.path.exists(args.doc) else "# Benchmarks\n"
    for set_name in args.sets.split():
        body = render(set_name, runs, args.results)
        if body is None:
            print("bench_tables: no results for set {}; left as it was".format(set_name),
                  file=sys.stderr)
            continue
        doc = replace_block(doc, set_name, body)
    with open(args.doc, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    main()
