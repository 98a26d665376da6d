"""The workflow parts of the Python SDK (docs/workflow.md) that need no
server support beyond today's: Join attributes (checked before sending,
accepted by a real server), report_evaluation's checks, Task.config from
the wire, tally.run() serving TRAIN tasks to the end of a real run, and the
history file read and plotted (a file written by hand from the format's
description; the PNG's header is read with struct, not with the plotter).
Evaluation and filters through a real server are the server wiring's tests."""
import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import tally
from conftest import PACKAGE_ROOT, build_binary
from tally.client import Client, Task
from tally.errors import TallyError
from tally.testing import ServerProcess
from tally.workflow import check_attributes, check_metrics, task_config

MODEL = 'model { tensors { name: "w" shape: 4 } }'

# Written by hand: 3 rounds with fit metrics (round 2 twice: a server that
# restarted from an earlier checkpoint; the last one counts), 2 evaluations.
HISTORY = "\n".join([
    '{"kind":"fit","time":"2025-12-08T00:02:03.456Z","unix_ms":1765152123456,"round":1,'
    '"model_version":1,"participants":2,"bytes_received":320,"num_examples":500,'
    '"metrics":{"accuracy":0.5,"loss":1.5},"decisions":{}}',
    '{"kind":"fit","unix_ms":1765152124000,"round":2,"model_version":2,"participants":2,'
    '"bytes_received":320,"num_examples":500,"metrics":{"accuracy":0.55,"loss":1.4},'
    '"decisions":{}}',
    '{"kind":"evaluate","unix_ms":1765152124500,"round":2,"model_version":2,'
    '"participants":3,"evaluation_id":1,"num_examples":900,"metrics":{"accuracy":0.6}}',
    '{"kind":"fit","unix_ms":1765152125000,"round":2,"model_version":2,"participants":2,'
    '"bytes_received":320,"num_examples":500,"metrics":{"accuracy":0.6,"loss":1.2},'
    '"decisions":{}}',
    '{"kind":"fit","unix_ms":1765152126000,"round":3,"model_version":3,"participants":1,'
    '"bytes_received":160,"num_examples":250,"metrics":{"accuracy":0.7,"loss":0.9},'
    '"decisions":{"rule":"median"}}',
    '{"kind":"evaluate","unix_ms":1765152127000,"round":3,"model_version":3,'
    '"participants":3,"evaluation_id":2,"num_examples":900,"metrics":{"accuracy":0.75}}',
]) + "\n"


def png_size(path):
    """(width, height) from a PNG's signature and IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", head[:8]
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_attributes_are_checked_before_anything_is_sent():
    assert check_attributes({"region": "eu", "device": "gpu"}) == {"region": "eu",
                                                                    "device": "gpu"}
    client = Client("127.0.0.1:1", "edge-1", connect_timeout=0.1)
    for bad in ({"": "x"}, {"re gion": "eu"}, {"a" * 65: "x"}, {"region": "v" * 129},
                {"region": "e\nu"}, {f"k{i}": "v" for i in range(17)}, {"region": 3}):
        with pytest.raises(TallyError, match="attributes"):
            client.join(attributes=bad)
    assert client.attributes == {}  # Nothing kept from a refused call.
    client.close()


def test_a_real_server_takes_a_join_with_attributes():
    with ServerProcess(build_binary("tally-server"), MODEL) as server:
        client = Client(server.target, "eu-gpu-1", seed=1)
        client.join(attributes={"region": "eu", "device": "gpu"})
        assert client.attributes == {"region": "eu", "device": "gpu"}
        client.join()  # A re-join keeps them.
        assert client.attributes == {"region": "eu", "device": "gpu"}
        assert client.get_task(wait=10).kind == "train"
        client.close()


def test_report_evaluation_is_checked_before_sending():
    client = Client("127.0.0.1:1", "edge-1", connect_timeout=0.1)
    with pytest.raises(TallyError, match="not an EVALUATE task"):
        client.report_evaluation(Task("train"), 10, {})
    evaluate = Task("evaluate", round=3, model_version=3, evaluation_id=1)
    with pytest.raises(TallyError, match="num_examples"):
        client.report_evaluation(evaluate, 0, {})
    with pytest.raises(TallyError, match="finite"):
        client.report_evaluation(evaluate, 10, {"loss": math.nan})
    with pytest.raises(TallyError, match="metric name"):
        client.report_evaluation(evaluate, 10, {"m" * 65: 1.0})
    with pytest.raises(TallyError, match="not a number"):
        client.report_evaluation(evaluate, 10, {"loss": "low"})
    assert check_metrics({"loss": np.float32(0.5), "n": 3}, "x") == {"loss": 0.5, "n": 3.0}
    with pytest.raises(tally.NotJoinedError):  # Valid: then it needs a session.
        client.report_evaluation(evaluate, 10, {"accuracy": 0.9})
    client.close()


def test_task_config_from_the_wire():
    from tally.v1 import tally_pb2

    proto = tally_pb2.Task(kind=tally_pb2.Task.EVALUATE, round=7, model_version=6)
    proto.config["lr"].number = 0.05
    proto.config["optimizer"].text = "sgd"
    proto.evaluation.evaluation_id = 3
    assert task_config(proto.config) == {"lr": 0.05, "optimizer": "sgd"}
    assert tally_pb2.Task.EVALUATE == 4


def test_run_serves_train_tasks_to_the_end_of_a_run():
    config = MODEL + " rounds { clients_per_round: 1 total_rounds: 3 }"
    seen = []

    def fit(model, task):
        seen.append((task.round, model.version, dict(task.config)))
        return model.params + 1.0, 10, {"loss": 1.0 / task.round}

    with ServerProcess(build_binary("tally-server"), config) as server:
        client = Client(server.target, "runner", seed=1)
        served = tally.run(client, fit, attributes={"region": "eu"}, wait=10, leave=False)
        assert served == {"fit": 3, "evaluate": 0}
        # Each round starts from the previous one's model; SGD lr 1 over one
        # client's delta of +1 per round (hand computation: 3 rounds -> 3).
        assert [(r, v) for r, v, _ in seen] == [(1, 1), (2, 2), (3, 3)]  # The initial model is version 1.
        np.testing.assert_array_equal(client.pull_model().params, np.full(4, 3.0, np.float32))
        assert client.server_status().done
        client.close()


def test_history_is_read_and_plotted(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text(HISTORY)
    records = tally.read_history(str(path))
    assert [r["kind"] for r in records] == ["fit", "fit", "evaluate", "fit", "fit", "evaluate"]
    assert records[4]["decisions"] == {"rule": "median"}
    out = tmp_path / "run.png"
    series = tally.plot_history(str(path), str(out), title="digits")
    # 2 fit series (accuracy, loss) and 1 evaluate series (accuracy).
    assert sorted(series["fit"]) == ["accuracy", "loss"]
    assert sorted(series["evaluate"]) == ["accuracy"]
    assert series["fit"]["loss"] == [(1, 1.5), (2, 1.2), (3, 0.9)]  # Round 2: the last record.
    assert series["evaluate"]["accuracy"] == [(2, 0.6), (3, 0.75)]
    width, height = png_size(out)
    assert width == 700 and height == 520  # figsize (7, 2.6 x 2 panels) at dpi 100.
    assert os.path.getsize(out) > 1000


def test_history_command_line(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text(HISTORY)
    out = tmp_path / "cli.png"
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
    done = subprocess.run([sys.executable, "-m", "tally.history", f"--history={path}",
                           f"--out={out}"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "3 series over 2 metrics" in done.stdout
    assert png_size(out) == (700, 520)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(HISTORY + "{not json\n")
    done = subprocess.run([sys.executable, "-m", "tally.history", f"--history={bad}",
                           f"--out={out}"], capture_output=True, text=True, env=env)
    assert done.returncode == 1 and "line 7" in done.stderr, done.stderr


def test_history_without_metrics_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text('{"kind":"fit","round":1,"metrics":{}}\n')
    with pytest.raises(TallyError, match="no metrics"):
        tally.plot_history(str(path), str(tmp_path / "x.png"))
    path.write_text('{"kind":"train","round":1}\n')
    with pytest.raises(TallyError, match="line 1"):
        tally.read_history(str(path))
