#!/usr/bin/python3
"""Reruns the codec table of docs/compression.md: examples/pytorch_digits.py
(10 clients, 64-32-10 MLP, non-IID digits, FedAvg through a real
tally-server on loopback, no Byzantine clients) once per codec setting and
seed; prints a Markdown table of final test accuracy and upload bytes per
client per round (mean and range over the seeds) and writes every run's
numbers to --json.

    /usr/bin/python3 scripts/codec_results.py [--build_dir build] [--seeds 1,2,3,4,5]
        [--rounds 100] [--only "DGC"] [--names "float32,DGC 0.002"]
        [--json codec_results.json] [--jobs 1]

Runs are independent processes (each starts its own server on port 0);
--jobs runs several at once (the table is the same; use 1 on a busy
machine). Needs what the example needs (python3-torch, python3-sklearn,
python3-matplotlib) and a built tally-server.
"""
import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "pytorch_digits.py")

# (name, example flags). DGC: momentum 0 across rounds, each delta clipped
# to L2 norm 1 (about a client's first-round delta here), biases sparsified
# too, float16 values (compress/dgc.h explains the choices). The last rows
# vary one choice each at ratio 0.002.
DGC = ["--dgc_clip", "1.0", "--dgc_1d", "--dgc_half"]
SETTINGS = [
    ("float32", []),
    ("int8", ["--upload_codec", "int8"]),
    ("topk+EF 0.1", ["--upload_codec", "topk", "--upload_params", "ratio: 0.1"]),
    ("topk+EF 0.01", ["--upload_codec", "topk", "--upload_params", "ratio: 0.01"]),
    ("topk+EF 0.002", ["--upload_codec", "topk", "--upload_params", "ratio: 0.002"]),
    ("DGC 0.1", ["--dgc_ratio", "0.1"] + DGC),
    ("DGC 0.01", ["--dgc_ratio", "0.01"] + DGC),
    ("DGC 0.002", ["--dgc_ratio", "0.002"] + DGC),
    ("DGC 0.002, float32 values, 4 warm-up rounds",
     ["--dgc_ratio", "0.002", "--dgc_clip", "1.0", "--dgc_1d", "--dgc_warmup", "4"]),
    ("DGC 0.002, no clipping", ["--dgc_ratio", "0.002", "--dgc_1d", "--dgc_half"]),
    ("DGC 0.002, biases exact", ["--dgc_ratio", "0.002", "--dgc_clip", "1.0", "--dgc_half"]),
    ("DGC 0.002, momentum 0.9",
     ["--dgc_ratio", "0.002", "--dgc_momentum", "0.9"] + DGC),
]
FINAL = re.compile(r"final accuracy ([0-9.]+), best ([0-9.]+); per client per round "
                   r"([0-9]+) B down, ([0-9]+) B up")
DENSE = re.compile(r"float32 would be ([0-9]+) B")


def run(build_dir, name, flags, seed, rounds):
    with tempfile.TemporaryDirectory(prefix="codec-results-") as tmp:
        cmd = [sys.executable, EXAMPLE, "--build_dir", build_dir, "--byzantine", "0",
               "--rules", "mean", "--no_baseline", "--rounds", str(rounds), "--seed", str(seed),
               "--out", os.path.join(tmp, "plot.png")] + flags
        start = time.time()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        seconds = time.time() - start
    final, dense = FINAL.search(out.stdout), DENSE.search(out.stdout)
    if out.returncode != 0 or final is None:
        return {"name": name, "seed": seed, "error": (out.stdout + out.stderr)[-2000:]}
    return {"name": name, "seed": seed, "accuracy": float(final.group(1)),
            "best": float(final.group(2)), "up_bytes": int(final.group(4)),
            "dense_bytes": int(dense.group(1)), "seconds": round(seconds, 1)}


def summary(results, seeds):
    """Markdown rows: accuracy mean [min, max], bytes, compression."""
    lines = ["| upload | final accuracy, mean [min, max] (%) | Δ vs float32 (points) | "
             "bytes up per client per round, mean [min, max] | compression |",
             "|---|---|---|---|---|"]
    base = None
    for name, _ in SETTINGS:
        rows = [r for r in results if r["name"] == name and "error" not in r]
        if not rows:
            continue
        acc = [100 * r["accuracy"] for r in rows]
        up = [r["up_bytes"] for r in rows]
        mean_acc, mean_up = sum(acc) / len(acc), sum(up) / len(up)
        if name == "float32":
            base = mean_acc
        delta = f"{mean_acc - base:+.2f}" if base is not None else ""
        n = f" (n = {len(rows)})" if len(rows) != len(seeds) else ""
        lines.append(f"| {name}{n} | {mean_acc:.2f} [{min(acc):.2f}, {max(acc):.2f}] | {delta} "
                     f"| {mean_up:.0f} [{min(up)}, {max(up)}] | "
                     f"{rows[0]['dense_bytes'] / mean_up:.0f}× |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build_dir", default=os.path.join(REPO, "build"))
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--only", default="", help="run only settings whose name contains this")
    p.add_argument("--names", default="",
                   help="run only these settings (exact names, comma-separated)")
    p.add_argument("--json", default="codec_results.json")
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = set(args.names.split(",")) if args.names else None
    todo = [(name, flags, seed) for name, flags in SETTINGS
            if args.only in name and (names is None or name in names) for seed in seeds]
    start, results = time.time(), []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run, args.build_dir, name, flags, seed, args.rounds)
                   for name, flags, seed in todo]
        for future in futures:
            r = future.result()
            results.append(r)
            print(json.dumps(r) if "error" not in r else f"FAILED {r['name']} seed "
                  f"{r['seed']}:\n{r['error']}", flush=True)
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    print(f"\n{len(todo)} runs, {args.rounds} rounds, seeds {seeds}, {os.cpu_count()} cores, "
          f"{time.time() - start:.0f} s\n")
    print(summary(results, seeds))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
