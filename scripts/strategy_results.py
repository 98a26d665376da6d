#!/usr/bin/python3
"""Aggregation rules x attacks x seeds on examples/pytorch_digits.py, as a
markdown table of the final test accuracy: mean and range (min-max) over the
seeds per cell. Every run is a real tally-server on loopback with 10 Python
clients (see the example); the first k clients send -4 x their honest delta.

    /usr/bin/python3 scripts/strategy_results.py [--build_dir build]
        [--seeds 1,2,3] [--byzantine 0,2,3] [--f 3] [--rounds 30]
        [--rules mean,median,...] [--results runs.jsonl] [--table table.md]

Each finished run is appended to --results (one JSON object a line) and
skipped when the script is rerun with the same file, so an interrupted grid
resumes. The declared f of every robust rule is --f whatever the number of
attackers: a server does not know how many clients attack. Needs what the
example needs (Debian's python3-torch, python3-sklearn, a built server).
"""
import argparse
import importlib.util
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

DEFAULT_RULES = ("mean,median,trimmed_mean,multi_krum,nnm+trimmed_mean,monna,flag,"
                 "geometric_median,centered_clipping")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build_dir", default=os.environ.get("TALLY_BUILD_DIR",
                                                         os.path.join(REPO, "build")))
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--byzantine", default="0,2,3", help="attacking clients per column")
    p.add_argument("--f", type=int, default=3, help="declared f of the robust rules")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--rules", default=DEFAULT_RULES,
                   help="comma-separated; the example's syntax (pre+rule[fields])")
    p.add_argument("--results", default="strategy_results.jsonl")
    p.add_argument("--table", default="", help="also write the markdown table here")
    return p.parse_args()


def load_example():
    path = os.path.join(REPO, "examples", "pytorch_digits.py")
    spec = importlib.util.spec_from_file_location("pytorch_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example_args(example, args, seed):
    argv = sys.argv
    try:
        sys.argv = ["pytorch_digits", "--build_dir", args.build_dir, "--clients",
                    str(args.clients), "--rounds", str(args.rounds), "--seed", str(seed),
                    "--f", str(args.f)]
        return example.parse_args()
    finally:
        sys.argv = argv


def split_rules(text):
    """Commas split rules except inside [...]."""
    rules, depth, current = [], 0, ""
    for c in text:
        depth += c == "["
        depth -= c == "]"
        if c == "," and depth == 0:
            rules.append(current)
            current = ""
        else:
            current += c
    return [r for r in rules + [current] if r]


def load_done(path):
    done = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    run = json.loads(line)
                    done[(run["rule"], run["byzantine"], run["seed"])] = run
    return done


def table(done, rules, byzantine, seeds):
    head = "| rule | " + " | ".join(
        "no attack" if b == 0 else f"{b} Byzantine" for b in byzantine) + " |"
    lines = [head, "|---|" + "---|" * len(byzantine)]
    for rule in rules:
        cells = []
        for b in byzantine:
            accs = [done[(rule, b, s)]["final"] for s in seeds if (rule, b, s) in done]
            if not accs:
                cells.append("—")
                continue
            mean = sum(accs) / len(accs)
            missing = "" if len(accs) == len(seeds) else f" ({len(accs)} seeds)"
            cells.append(f"{mean:.3f} ({min(accs):.2f}–{max(accs):.2f}){missing}")
        lines.append(f"| `{rule}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    args = parse_args()
    example = load_example()
    example.setup_sdk(args.build_dir)
    import torch

    import tally

    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    byzantine = [int(b) for b in args.byzantine.split(",")]
    rules = split_rules(args.rules)
    done = load_done(args.results)
    start = time.time()
    for seed in seeds:
        run_args = example_args(example, args, seed)
        shares, test = example.load_data(args.clients, run_args.alpha, seed)
        for b in byzantine:
            for rule in rules:
                if (rule, b, seed) in done:
                    continue
                t0 = time.time()
                accs, _ = example.run_federation(tally, rule, b, shares, test, run_args,
                                                 verbose=False)
                run = {"rule": rule, "byzantine": b, "seed": seed, "final": accs[-1],
                       "best": max(accs), "rounds": len(accs) - 1,
                       "seconds": round(time.time() - t0, 1)}
                done[(rule, b, seed)] = run
                with open(args.results, "a") as f:
                    f.write(json.dumps(run) + "\n")
                print(f"seed {seed} byzantine {b} {rule:>24}: final {accs[-1]:.4f} "
                      f"({run['seconds']} s, {time.time() - start:.0f} s total)", flush=True)
    text = table(done, rules, byzantine, seeds)
    note = (f"\nFinal test accuracy after {args.rounds} rounds, mean (min–max) over seeds "
            f"{args.seeds}; {args.clients} clients, declared f = {args.f}.")
    print(text + note)
    if args.table:
        with open(args.table, "w") as f:
            f.write(text + note + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
