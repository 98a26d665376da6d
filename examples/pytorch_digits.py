#!/usr/bin/python3
"""A real federation with the Python SDK: tally-server plus N Python clients,
each training a small PyTorch MLP on its non-IID share of scikit-learn's
bundled digits dataset (8x8 images, 10 classes; no download). Some clients
may be Byzantine. Runs the federation once per aggregation rule (FedAvg's
mean, then a robust rule), prints the test accuracy after every round, and
writes a PNG of accuracy per round. A rule may carry pre-steps and options:
"nnm+trimmed_mean" (pre-step nnm, then trimmed_mean), or
'flag[flag_scale: "reference" flag_r: 1]' (StrategyConfig fields). monna's
trusted client is the last client (always honest here). Runs are
reproducible: the server's model init and every client's data order come
from --seed (each client has its own torch.Generator); scripts/
strategy_results.py repeats the runs over seeds and tabulates them. Compressed transfers: --upload_codec
(updates), --download_codec (models), --delta_codec (deltas between model
versions), or the SDK's Deep Gradient Compression (--dgc_*; docs/compression.md);
the bytes each client sends and receives per round are reported.

    /usr/bin/python3 examples/pytorch_digits.py [--build_dir build] [--clients 10]
        [--byzantine 2] [--rounds 30] [--rules mean,trimmed_mean] [--out digits.png]
        [--upload_codec topk --upload_params "ratio: 0.1"] [--download_codec float16]
        [--delta_codec int8] [--dgc_ratio 0.01 --dgc_clip 1.0 --dgc_1d]

Needs Debian's python3-torch, python3-sklearn, python3-matplotlib and the
SDK's packages, and a built tally-server (scripts/build.sh). Use Debian's
/usr/bin/python3: the stubs are generated into <build_dir>/python if needed.
"""
import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build_dir", default=os.environ.get("TALLY_BUILD_DIR",
                                                         os.path.join(REPO, "build")))
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--byzantine", type=int, default=2,
                   help="clients that send -4 x their honest delta (sign flip, scaled)")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--local_epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label-skew (non-IID)")
    p.add_argument("--rules", default="mean,trimmed_mean",
                   help="server strategy.rule per run, e.g. nnm+trimmed_mean or "
                        "'flag[flag_r: 1]'; robust rules get f = --f")
    p.add_argument("--f", type=int, default=None,
                   help="declared f of the robust rules (default: max(--byzantine, 1))")
    p.add_argument("--no_baseline", action="store_true",
                   help="skip the reference run: FedAvg without Byzantine clients")
    p.add_argument("--upload_codec", default="float32",
                   help="codec of the updates (server compression.upload): float16, int8, "
                        "sign, topk, ...; lossy ones with error feedback")
    p.add_argument("--upload_params", default="",
                   help='its CodecParams as text proto, e.g. "ratio: 0.1" for topk')
    p.add_argument("--download_codec", default="float32",
                   help="codec of the models pulled (compression.download): float16, "
                        "bfloat16, int8")
    p.add_argument("--delta_codec", default="",
                   help="codec of deltas between model versions (compression.download_delta: "
                        "float16, int8, topk, ...): a client holding the previous version pulls "
                        "only the delta")
    p.add_argument("--delta_params", default="", help="its CodecParams as text proto")
    p.add_argument("--dgc_ratio", type=float, default=0.0,
                   help="> 0: updates through the SDK's Deep Gradient Compression "
                        "(tally.DgcSettings) at this ratio; the server takes topk")
    p.add_argument("--dgc_momentum", type=float, default=0.0, help="DGC momentum across rounds")
    p.add_argument("--dgc_clip", type=float, default=0.0,
                   help="DGC: clip each delta to this L2 norm (0: off)")
    p.add_argument("--dgc_1d", action="store_true", help="DGC: sparsify the biases too")
    p.add_argument("--dgc_warmup", type=int, default=0, help="DGC: warm-up rounds of sparsity")
    p.add_argument("--dgc_half", action="store_true", help="DGC: float16 values")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="pytorch_digits.png")
    return p.parse_args()


def setup_sdk(build_dir):
    """Puts the source tree's SDK on the path, with stubs in build_dir/python."""
    sys.path.insert(0, os.path.join(REPO, "client", "python"))
    gen = os.path.join(build_dir, "python")
    if not os.path.exists(os.path.join(gen, "tally", "v1", "tally_pb2_grpc.py")):
        import gen_protos
        gen_protos.generate(gen)
    os.environ["TALLY_PY_GEN"] = gen


def load_data(num_clients, alpha, seed):
    """Train / test split of digits; train split by a Dirichlet label skew."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=seed,
                                                        stratify=y)
    g = np.random.default_rng(seed)
    shares = [[] for _ in range(num_clients)]
    for label in range(10):
        idx = g.permutation(np.flatnonzero(y_train == label))
        cuts = (np.cumsum(g.dirichlet([alpha] * num_clients)) * idx.size).astype(int)[:-1]
        for client, part in enumerate(np.split(idx, cuts)):
            shares[client].extend(part.tolist())
    return [(x_train[s], y_train[s]) for s in shares], (x_test, y_test)


def make_model():
    import torch

    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def accuracy(net, data):
    import torch

    x, y = data
    with torch.no_grad():
        return float((net(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def train_client(tally, target, index, data, byzantine, args, stop, transfers, diverged):
    """One client's loop: task, pull, local SGD, push the (attacked) delta.
    Appends (bytes pulled, bytes pushed) per round to `transfers`. Sets
    `diverged` and stops when the server refuses an update for values above
    its limits.max_abs_value (a model wrecked by an attack grows without
    bound; the server never folds such values in)."""
    import torch

    # The client's own generator: threads sharing torch's global one would
    # interleave their draws differently in every run.
    generator = torch.Generator().manual_seed(args.seed * 1000 + index)
    net = make_model()  # Its initial weights are replaced by every pulled model.
    x, y = torch.from_numpy(data[0]), torch.from_numpy(data[1]).long()
    with tally.Client(target, client_id(index), upload_codecs=[args.upload_codec],
                      dgc=dgc_settings(tally, args)) as client:
        client.join()
        for task in client.train_tasks(wait=5, stop=stop):
            model = client.pull_model()
            base = model.state_dict(like=net.state_dict())
            net.load_state_dict(base)
            opt = torch.optim.SGD(net.parameters(), lr=args.lr)
            for _ in range(args.local_epochs):
                for batch in torch.randperm(len(y), generator=generator).split(16):
                    opt.zero_grad()
                    torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
                    opt.step()
            layout = model.layout
            delta = layout.flatten(net.state_dict()) - layout.flatten(base)
            if byzantine:
                delta = -4.0 * delta
            try:
                pushed = client.push_update(delta=delta, round=task.round,
                                            base_version=model.version, num_samples=max(1, len(y)),
                                            metrics={"byzantine": byzantine})
            except tally.RejectedUpdateError as e:
                if "max_abs_value" not in str(e):
                    raise
                diverged.set()
                break
            transfers.append((model.payload_bytes, pushed.payload_bytes))
        client.leave()


def client_id(index):
    return f"digits-{index}"


def strategy_config(rule, byzantine, args):
    """The StrategyConfig text of a --rules entry: "pre+...+rule[fields]"."""
    options = ""
    if rule.endswith("]") and "[" in rule:
        rule, options = rule[:-1].split("[", 1)
    *pres, name = rule.split("+")
    if name == "mean" and not pres:
        return f'rule: "mean" {options}'
    f = args.f if args.f is not None else max(byzantine, 1)
    text = f'rule: "{name}" f: {f}' + "".join(f' pre: "{p}"' for p in pres)
    if name == "monna":  # The last client: honest (the first --byzantine attack).
        text += f' trusted_client: "{client_id(args.clients - 1)}"'
    return f"{text} {options}".strip()


def run_federation(tally, rule, byzantine, shares, test, args, verbose=True):
    """One federation with `rule` and the first `byzantine` clients
    attacking; returns the test accuracy per round."""
    from tally.layout import ModelLayout
    from tally.testing import ServerProcess

    net = make_model()
    layout = ModelLayout.from_state_dict(net.state_dict())
    config = (f"model {{ {layout.tensor_config()} init {{ kind: UNIFORM scale: 0.15 seed: "
              f"{args.seed} }} }} rounds {{ clients_per_round: {args.clients} total_rounds: "
              f"{args.rounds} round_timeout_ms: 60000 }} "
              f"strategy {{ {strategy_config(rule, byzantine, args)} }}")
    config += compression_config(args)
    binary = os.path.join(args.build_dir, "server", "tally-server")
    accuracies, transfers = [], []
    with ServerProcess(binary, config) as server:
        stop, diverged = threading.Event(), threading.Event()
        threads = [threading.Thread(target=train_client, daemon=True, args=(
            tally, server.target, i, shares[i], i < byzantine, args, stop, transfers, diverged))
            for i in range(args.clients)]
        for t in threads:
            t.start()
        # The evaluator measures the exact global model.
        with tally.Client(server.target, "digits-evaluator",
                          download_codecs=["float32"]) as evaluator:
            evaluator.join()
            model = evaluator.pull_model()
            version, start = model.version, time.time()
            while True:
                net.load_state_dict(model.state_dict(like=net.state_dict()))
                accuracies.append(accuracy(net, test))
                if verbose:
                    print(f"  {label(rule, byzantine):>24}  round {model.round:3d}  test "
                          f"accuracy {accuracies[-1]:.4f}  ({time.time() - start:.1f} s)",
                          flush=True)
                if model.round >= args.rounds:
                    break
                version = wait_or_diverge(evaluator, version, diverged)
                if version is None:
                    # The model diverged: its accuracy stays where it is.
                    print(f"  {label(rule, byzantine):>24}  diverged at round {model.round}: "
                          "updates exceed the server's limits.max_abs_value, stopping; the "
                          "remaining rounds keep the last accuracy", flush=True)
                    accuracies += [accuracies[-1]] * (args.rounds - model.round)
                    break
                model = evaluator.pull_model()
                version = model.version
            evaluator.leave()
        stop.set()
        for t in threads:
            t.join(30)
    return accuracies, transfers


def wait_or_diverge(evaluator, version, diverged, timeout=120):
    """The next version after `version`, or None once `diverged` is set."""
    deadline = time.time() + timeout
    while not diverged.is_set():
        try:
            return evaluator.wait_for_version(version, timeout=1)
        except TimeoutError:
            if time.time() > deadline:
                raise
    return None


def dgc_settings(tally, args):
    """The clients' tally.DgcSettings for the --dgc_* flags (None: no DGC)."""
    if args.dgc_ratio <= 0:
        return None
    return tally.DgcSettings(momentum=args.dgc_momentum, clip_norm=args.dgc_clip,
                             compress_1d=args.dgc_1d, compress_ratio=args.dgc_ratio,
                             warmup_steps=args.dgc_warmup, half_values=args.dgc_half)


def compression_config(args):
    """The server's compression block for the codec options ("" if none)."""
    def choice(codec, params):
        return f'{{ codec: "{codec}"' + (f" params {{ {params} }}" if params else "") + " }"

    parts = []
    if args.dgc_ratio > 0:  # DGC clients send topk payloads.
        parts.append('upload { codec: "topk" }')
    elif args.upload_codec != "float32":
        parts.append(f"upload {choice(args.upload_codec, args.upload_params)}")
    if args.download_codec != "float32":
        parts.append(f"download {choice(args.download_codec, '')}")
    if args.delta_codec:
        parts.append(f"download_delta {choice(args.delta_codec, args.delta_params)}")
    return f" compression {{ {' '.join(parts)} }}" if parts else ""


def label(rule, byzantine):
    name = "FedAvg (mean)" if rule == "mean" else rule
    return f"{name}, {byzantine} Byzantine"


def plot(results, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, acc in results.items():
        ax.plot(range(len(acc)), acc, marker="o", markersize=3, label=name)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(f"digits, {args.clients} clients (non-IID, alpha {args.alpha}), "
                 "Byzantine: -4x sign flip", fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)


def main():
    args = parse_args()
    setup_sdk(args.build_dir)
    import numpy as np
    import torch

    import tally

    torch.set_num_threads(1)
    shares, test = load_data(args.clients, args.alpha, args.seed)
    print(f"pytorch_digits: {args.clients} clients ({args.byzantine} Byzantine), "
          f"{args.rounds} rounds, samples per client {[len(s[1]) for s in shares]}")
    runs = [] if args.no_baseline else [("mean", 0)]
    runs += [(rule, args.byzantine) for rule in args.rules.split(",")]
    results, transfers = {}, {}
    for rule, byzantine in runs:
        name = label(rule, byzantine)
        results[name], transfers[name] = run_federation(tally, rule, byzantine, shares, test,
                                                        args)
    plot(results, args)
    upload = f"DGC at {args.dgc_ratio}" if args.dgc_ratio > 0 else args.upload_codec
    codecs = f"upload {upload}, download {args.download_codec}" + (
        f", deltas {args.delta_codec}" if args.delta_codec else "")
    dense = 4 * sum(p.numel() for p in make_model().parameters())
    print(f"{codecs}; float32 would be {dense} B each way per client per round")
    for name, acc in results.items():
        down, up = np.mean(transfers[name], axis=0) if transfers[name] else (0, 0)
        print(f"{name:>24}: final accuracy {acc[-1]:.4f}, best {max(acc):.4f}; per client "
              f"per round {down:.0f} B down, {up:.0f} B up")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
