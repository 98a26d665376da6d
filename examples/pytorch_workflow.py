#!/usr/bin/python3
"""The federated-learning workflow end to end (docs/workflow.md): a PyTorch
MLP on scikit-learn's bundled digits data (no download) that

  1. starts from a pretrained model: the example pretrains the MLP on a
     small public share of the data and writes it as a .safetensors file,
     which the server loads (model { init { file } });
  2. trains with N Python clients served by tally.run(client, fit,
     evaluate), each on its non-IID share, declaring attributes
     (region=eu/us) and sending its training loss and accuracy as metrics;
  3. follows a cosine learning-rate schedule the server sends in every
     task (client_config: Task.config["lr"]);
  4. evaluates the global model on the clients' own held-out data every
     --eval_every rounds and at the end (federated evaluation, weighted
     mean of the clients' accuracies);
  5. writes the run history (JSON Lines) and plots it to a PNG;
  6. exports the final model (final_model_path, and `tally export` of the
     checkpoint), reloads it into PyTorch and checks that its accuracy on
     the union of the clients' held-out data equals the accuracy the
     server's last evaluation record reports (a weighted mean by examples
     of per-client accuracies is exactly the pooled accuracy).

    /usr/bin/python3 examples/pytorch_workflow.py [--build_dir build] [--clients 6]
        [--rounds 12] [--eval_every 3] [--out_dir workflow_out]

Needs Debian's python3-torch, python3-sklearn, python3-matplotlib, the SDK's
packages and a built tally-server and tally (scripts/build.sh). Exits 1 if
the reloaded model's accuracy differs from the history's.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build_dir", default=os.environ.get("TALLY_BUILD_DIR",
                                                         os.path.join(REPO, "build")))
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--eval_every", type=int, default=3)
    p.add_argument("--local_epochs", type=int, default=1)
    p.add_argument("--lr_max", type=float, default=0.1)
    p.add_argument("--lr_min", type=float, default=0.005)
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label skew (non-IID)")
    p.add_argument("--pretrain_fraction", type=float, default=0.1,
                   help="share of the training data used to pretrain the initial model")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out_dir", default="workflow_out")
    return p.parse_args()


def setup_sdk(build_dir):
    """Puts the source tree's SDK on the path, with stubs in build_dir/python."""
    sys.path.insert(0, os.path.join(REPO, "client", "python"))
    gen = os.path.join(build_dir, "python")
    if not os.path.exists(os.path.join(gen, "tally", "v1", "tally_pb2_grpc.py")):
        import gen_protos
        gen_protos.generate(gen)
    os.environ["TALLY_PY_GEN"] = gen


def load_data(args):
    """A public pretraining share, and per client a (train, held-out) pair
    split from its Dirichlet label-skewed share."""
    import numpy as np
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    g = np.random.default_rng(args.seed)
    order = g.permutation(len(y))
    public = order[:int(args.pretrain_fraction * len(y))]
    private = order[len(public):]
    shares = [[] for _ in range(args.clients)]
    for label in range(10):
        idx = g.permutation(private[y[private] == label])
        cuts = (np.cumsum(g.dirichlet([args.alpha] * args.clients)) * idx.size).astype(int)[:-1]
        for client, part in enumerate(np.split(idx, cuts)):
            shares[client].extend(part.tolist())
    clients = []
    for share in shares:
        share = g.permutation(np.array(share, dtype=np.int64))
        held = max(1, len(share) // 4)
        clients.append(((x[share[held:]], y[share[held:]]), (x[share[:held]], y[share[:held]])))
    return (x[public], y[public]), clients


def make_model():
    import torch

    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def correct(net, data):
    import torch

    x, y = data
    with torch.no_grad():
        return int((net(torch.from_numpy(x)).argmax(1).numpy() == y).sum())


def train(net, data, lr, epochs, generator):
    """Local SGD; returns (mean loss of the last epoch, training accuracy)."""
    import torch

    x, y = torch.from_numpy(data[0]), torch.from_numpy(data[1]).long()
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(epochs):
        total = 0.0
        for batch in torch.randperm(len(y), generator=generator).split(16):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
            loss.backward()
            opt.step()
            total += float(loss) * len(batch)
    return total / len(y), correct(net, data) / len(y)


def pretrain(tally, public, args, path):
    """A model trained centrally on the public share, written as safetensors."""
    import torch

    torch.manual_seed(args.seed)
    net = make_model()
    generator = torch.Generator().manual_seed(args.seed)
    for _ in range(20):
        train(net, public, 0.1, 1, generator)
    tally.write_model_file(path, net.state_dict(), metadata={"source": "pytorch_workflow"})
    return net


def server_config(args, init_path, history_path, final_path, checkpoint_dir):
    return f"""
model {{ init {{ file: "{init_path}" }} }}
rounds {{ clients_per_round: {args.clients} total_rounds: {args.rounds} round_timeout_ms: 60000 }}
evaluation {{ every_rounds: {args.eval_every} at_end: true clients: {args.clients}
             timeout_ms: 60000 aggregation {{ key: "examples" value: "sum" }} }}
client_config {{
  values {{ key: "lr" value {{ cosine {{ max: {args.lr_max} min: {args.lr_min}
                                       rounds: {args.rounds} }} }} }}
  values {{ key: "epochs" value {{ constant: {args.local_epochs} }} }}
}}
history {{ path: "{history_path}" }}
final_model_path: "{final_path}"
checkpoint_dir: "{checkpoint_dir}"
"""


def client_loop(tally, target, index, data, args, errors, lrs):
    """One client: tally.run with this client's fit and evaluate."""
    import torch

    generator = torch.Generator().manual_seed(args.seed * 1000 + index)
    net = make_model()
    train_data, held_out = data

    def load(model):
        net.load_state_dict(model.state_dict(like=net.state_dict()))

    def fit(model, task):
        load(model)
        lr = task.config.get("lr", args.lr_max)
        lrs.append((task.round, lr))
        loss, acc = train(net, train_data, lr, int(task.config.get("epochs", 1)), generator)
        return net.state_dict(), len(train_data[1]), {"loss": loss, "accuracy": acc}

    def evaluate(model, task):
        load(model)
        n = len(held_out[1])
        return n, {"accuracy": correct(net, held_out) / n, "examples": n}

    try:
        region = "eu" if index % 2 == 0 else "us"
        with tally.Client(target, f"workflow-{index}", download_codecs=["float32"]) as client:
            tally.run(client, fit, evaluate, attributes={"region": region}, wait=5)
    except Exception as e:  # noqa: BLE001 -- reported by main.
        errors.append(f"client {index}: {e!r}")


def main():
    args = parse_args()
    setup_sdk(args.build_dir)
    import numpy as np
    import torch

    import tally
    from tally.testing import ServerProcess

    torch.set_num_threads(1)
    out = os.path.abspath(args.out_dir)
    os.makedirs(out, exist_ok=True)
    paths = {name: os.path.join(out, name) for name in
             ("pretrained.safetensors", "run.jsonl", "final.safetensors", "run.png",
              "exported.npz", "checkpoints")}
    # A fresh run: an earlier run's checkpoint would be resumed (already at
    # total_rounds, the server would finish at once) and its history appended to.
    shutil.rmtree(paths["checkpoints"], ignore_errors=True)
    for name in ("run.jsonl", "final.safetensors", "exported.npz", "run.png"):
        if os.path.exists(paths[name]):
            os.remove(paths[name])

    public, clients = load_data(args)
    held_out = (np.concatenate([c[1][0] for c in clients]),
                np.concatenate([c[1][1] for c in clients]))
    net = pretrain(tally, public, args, paths["pretrained.safetensors"])
    pretrained_accuracy = correct(net, held_out) / len(held_out[1])
    print(f"pretrained on {len(public[1])} public examples: accuracy {pretrained_accuracy:.4f} "
          f"on the clients' {len(held_out[1])} held-out examples")

    config = server_config(args, paths["pretrained.safetensors"], paths["run.jsonl"],
                           paths["final.safetensors"], paths["checkpoints"])
    binary = os.path.join(args.build_dir, "server", "tally-server")
    errors, lrs = [], []
    with ServerProcess(binary, config, extra_args=["--exit_when_done"]) as server:
        threads = [threading.Thread(target=client_loop, daemon=True,
                                    args=(tally, server.target, i, clients[i], args, errors, lrs))
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1

    records = tally.read_history(paths["run.jsonl"])
    for r in records:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(r["metrics"].items()))
        print(f"  {r['kind']:>8}  round {r['round']:3d}  version {r['model_version']:3d}  "
              f"{r['participants']} clients  {metrics}")
    series = tally.plot_history(paths["run.jsonl"], paths["run.png"],
                                title=f"digits, {args.clients} clients, pretrained start")
    print(f"lr per round: {sorted(set(lrs))}")
    print(f"wrote {paths['run.png']} ({sum(len(s) for s in series.values())} series)")

    # The final model: final_model_path and `tally export` of the checkpoint.
    tool = os.path.join(args.build_dir, "tools", "tally")
    subprocess.run([tool, "export", f"--checkpoint_dir={paths['checkpoints']}",
                    f"--out={paths['exported.npz']}"], check=True)
    final = tally.read_model_file(paths["final.safetensors"])
    exported = tally.read_model_file(paths["exported.npz"])
    assert all(np.array_equal(final[k], exported[k]) for k in final), "export differs"
    net.load_state_dict({k: torch.from_numpy(v) for k, v in final.items()})
    reloaded = correct(net, held_out) / len(held_out[1])
    last = [r for r in records if r["kind"] == "evaluate"][-1]
    reported = last["metrics"]["accuracy"]
    print(f"final model (version {last['model_version']}): server's federated evaluation "
          f"{reported:.6f} over {last['num_examples']} examples; reloaded into PyTorch "
          f"{reloaded:.6f}")
    if abs(reloaded - reported) > 1e-9:
        print("MISMATCH: the reloaded model's accuracy differs from the history's",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
