"""The run history (docs/workflow.md#history): read a server's JSON Lines
history file, turn it into per-round series, and plot them.

    records = tally.read_history("run.jsonl")
    series = tally.plot_history("run.jsonl", "run.png")   # loss/accuracy per round

or from a shell:

    python3 -m tally.history --history=run.jsonl --out=run.png
"""
import argparse
import json
import sys

from tally.errors import TallyError

KINDS = ("fit", "evaluate")


def read_history(path):
    """The records of a history file as dicts (one per line, in order).
    Raises TallyError naming the line for one that is not a record."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise TallyError(f"{path} line {number}: not JSON: {e}") from None
            if not isinstance(record, dict) or record.get("kind") not in KINDS:
                raise TallyError(f"{path} line {number}: not a history record (kind must be "
                                 "\"fit\" or \"evaluate\")")
            records.append(record)
    return records


def record_from_proto(r):
    """A tally.v1.RoundRecord (Admin.GetHistory) as the file's dict."""
    record = {"kind": r.kind, "unix_ms": r.unix_ms, "round": r.round,
              "model_version": r.model_version, "participants": r.participants,
              "num_examples": r.num_examples, "metrics": dict(r.metrics)}
    if r.kind == "fit":
        record["bytes_received"] = r.bytes_received
        record["decisions"] = dict(r.decisions)
    else:
        record["evaluation_id"] = r.evaluation_id
    return record


def history_series(records):
    """{"fit": {metric: [(round, value), ...]}, "evaluate": {...}}, rounds
    ascending; a round recorded twice (a server restarted from an earlier
    checkpoint) keeps its last record."""
    last = {}
    for record in records:
        last[(record["kind"], record.get("round", 0))] = record
    series = {kind: {} for kind in KINDS}
    for (kind, round_), record in sorted(last.items(), key=lambda item: item[0][1]):
        for name, value in record.get("metrics", {}).items():
            series[kind].setdefault(name, []).append((round_, value))
    return series


def plot_history(history, out, title=None):
    """Plots every metric per round, one panel per metric name, with its
    fit series (client metrics sent with updates) and its evaluate series
    (federated evaluation), into the PNG `out`. `history`: a path to a
    history file or a list of records. Returns what was plotted, as
    history_series(). Needs matplotlib (Debian: python3-matplotlib)."""
    records = read_history(history) if isinstance(history, str) else list(history)
    series = history_series(records)
    names = sorted(set(series["fit"]) | set(series["evaluate"]))
    if not names:
        raise TallyError("plot_history: the history holds no metrics to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.6 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        for kind, style in (("fit", "o-"), ("evaluate", "s--")):
            points = series[kind].get(name)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], style, label=kind,
                        markersize=3)
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best")
    axes[-1, 0].set_xlabel("round")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return series


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m tally.history",
                                description="Plot a tally-server run history (JSON Lines).")
    p.add_argument("--history", required=True, help="the server's history.path file")
    p.add_argument("--out", required=True, help="the PNG to write")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    try:
        series = plot_history(args.history, args.out, args.title)
    except (OSError, TallyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    count = sum(len(s) for s in series.values())
    print(f"{args.out}: {count} series over {len(set(series['fit']) | set(series['evaluate']))} "
          "metrics")
    return 0


if __name__ == "__main__":
    sys.exit(main())
