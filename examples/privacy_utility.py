#!/usr/bin/python3
"""The privacy-utility trade-off of central DP (docs/privacy.md): a real
tally-server with privacy { mode: "central" } and tally-sim's clients
(synthetic 10-class softmax data, non-IID Dirichlet split, over real gRPC)
for each target epsilon and seed; prints a markdown table of final test
accuracy (mean and range over the seeds).

For each target epsilon the noise multiplier z is the smallest that spends
at most that epsilon in --rounds rounds at q = 1 (`tally privacy
--target_epsilon`): the server selects the first clients_per_round clients
to ask, so no sampling amplification is claimed
(docs/privacy.md#selection-modes). Every round takes all --clients clients (m = clients), so the mean's
noise is z * C / m per coordinate. epsilon = inf is privacy off: the plain
FedAvg (sample-weighted, unclipped) mean.

    /usr/bin/python3 examples/privacy_utility.py [--build_dir build]
        [--clients 100] [--rounds 20] [--seeds 1,2,3] [--epsilons inf,8,4,2]
        [--clip_norm 1.0]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build_dir", default=os.environ.get("TALLY_BUILD_DIR",
                                                         os.path.join(REPO, "build")))
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epsilons", default="inf,8,4,2")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--clip_norm", type=float, default=1.0)
    return p.parse_args()


def noise_multiplier(args, epsilon):
    out = subprocess.run(
        [os.path.join(args.build_dir, "tools", "tally"), "privacy", "--sampling_rate=1",
         f"--target_epsilon={epsilon}", f"--steps={args.rounds}", f"--delta={args.delta}"],
        check=True, capture_output=True, text=True).stdout
    return float(re.search(r"noise_multiplier=(\S+)", out).group(1))


def server_config(args, z):
    config = ('model { tensors { name: "dense/kernel" shape: 32 shape: 10 } '
              'tensors { name: "dense/bias" shape: 10 } } '
              f"rounds {{ clients_per_round: {args.clients} min_clients: {args.clients} "
              f"total_rounds: {args.rounds} }}")
    if z is not None:
        config += (f' privacy {{ mode: "central" clip_norm: {args.clip_norm} '
                   f"noise_multiplier: {z} delta: {args.delta} }}")
    return config


def run(args, z, seed):
    """One federation; returns (final accuracy, epsilon the server logged)."""
    with tempfile.TemporaryDirectory(prefix="tally-dp-") as d:
        config_path, port_path = os.path.join(d, "config.textproto"), os.path.join(d, "port")
        with open(config_path, "w") as f:
            f.write(server_config(args, z))
        log = open(os.path.join(d, "server.log"), "w+")
        server = subprocess.Popen(
            [os.path.join(args.build_dir, "server", "tally-server"), f"--config={config_path}",
             "--listen=127.0.0.1:0", f"--port_file={port_path}", "--metrics_port=-1"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(300):
                if os.path.exists(port_path) and open(port_path).read().strip().isdigit():
                    break
                time.sleep(0.05)
            time.sleep(0.1)
            port = open(port_path).read().strip()
            out = subprocess.run(
                [os.path.join(args.build_dir, "sim", "tally-sim"), f"--server=127.0.0.1:{port}",
                 f"--clients={args.clients}", f"--rounds={args.rounds}", f"--seed={seed}",
                 "--quiet"], check=True, capture_output=True, text=True).stdout
        finally:
            server.terminate()
            server.wait(30)
        accuracy = float(re.search(r"final accuracy\s+(\S+)", out).group(1))
        log.seek(0)
        spent = re.findall(r"epsilon=(\S+) \(delta", log.read())
        return accuracy, (float(spent[-1]) if spent else float("inf"))


def main():
    args = parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{args.clients} clients per round (q = 1, first come), {args.rounds} rounds, "
          f"C = {args.clip_norm}, delta = {args.delta}, seeds {seeds}\n")
    print("| target ε | z | ε spent | noise z·C/m | final accuracy (mean) | range |")
    print("|---|---|---|---|---|---|")
    for e in args.epsilons.split(","):
        z = None if e == "inf" else noise_multiplier(args, float(e))
        results = [run(args, z, seed) for seed in seeds]
        accuracies = [a for a, _ in results]
        mean = sum(accuracies) / len(accuracies)
        spent = results[0][1]
        print(f"| {'∞' if z is None else e} | {'-' if z is None else f'{z:.3f}'} | "
              f"{'∞' if z is None else f'{spent:.3f}'} | "
              f"{'0' if z is None else f'{z * args.clip_norm / args.clients:.4f}'} | "
              f"{mean:.4f} | {min(accuracies):.4f} – {max(accuracies):.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
