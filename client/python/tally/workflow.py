"""The federated-learning workflow on the client side (docs/workflow.md):
checks of what a client declares and reports (Join attributes, metrics),
the per-round config of a task, and run(), a Flower-style client loop that
calls your fit() for TRAIN tasks and evaluate() for EVALUATE tasks.

    def fit(model, task):              # model: the pulled tally.Model
        net.load_state_dict(model.state_dict(like=net.state_dict()))
        loss = train(net, lr=task.config.get("lr", 0.1))
        return net.state_dict(), len(train_set), {"loss": loss}

    def evaluate(model, task):
        net.load_state_dict(model.state_dict(like=net.state_dict()))
        accuracy = test(net)
        return len(test_set), {"accuracy": accuracy}

    tally.run(client, fit, evaluate, attributes={"region": "eu"})
"""
import math
import re

from tally.errors import TallyError

MAX_ATTRIBUTES = 16
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")


def check_attributes(attributes):
    """A copy of Join attributes as str -> str, checked as the server does:
    at most 16 entries, names 1..64 of [A-Za-z0-9._-], values at most 128
    printable ASCII characters. Raises TallyError naming the entry."""
    attributes = dict(attributes or {})
    if len(attributes) > MAX_ATTRIBUTES:
        raise TallyError(f"attributes: {len(attributes)} entries, at most {MAX_ATTRIBUTES}")
    for name, value in attributes.items():
        if not isinstance(name, str) or not _ATTRIBUTE_NAME.match(name):
            raise TallyError(f"attributes: name {name!r} must be 1..64 characters of "
                             "[A-Za-z0-9._-]")
        if not isinstance(value, str) or len(value) > 128 or \
                not all(0x20 <= ord(c) <= 0x7E for c in value):
            raise TallyError(f"attributes: '{name}' must have a value of at most 128 "
                             "printable ASCII characters")
    return attributes


def check_metrics(metrics, what):
    """A copy of metrics as str -> float: names 1..64 printable ASCII
    characters, finite values. Raises TallyError naming the entry."""
    out = {}
    for name, value in (metrics or {}).items():
        if not isinstance(name, str) or not 1 <= len(name) <= 64 or \
                not all(0x20 <= ord(c) <= 0x7E for c in name):
            raise TallyError(f"{what}: metric name {name!r} must be 1..64 printable ASCII "
                             "characters")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TallyError(f"{what}: metric '{name}' is not a number: {value!r}") from None
        if not math.isfinite(number):
            raise TallyError(f"{what}: metric '{name}' is {number} (values must be finite)")
        out[name] = number
    return out


def task_config(proto_config):
    """Task.config of the wire as a dict name -> float or str."""
    return {name: (value.text if value.WhichOneof("kind") == "text" else value.number)
            for name, value in proto_config.items()}


def run(client, fit, evaluate=None, *, attributes=None, wait=30.0, stop=None, leave=True):
    """Joins (with `attributes`, if given) and serves tasks until the
    federation is done (or `stop`, a threading.Event, is set):

    TRAIN: pulls the task's model and calls fit(model, task) -> (weights,
    num_samples, metrics): the locally trained weights (flat array, dict of
    arrays or a PyTorch state_dict), their weight (> 0) and a dict of
    metrics (may be empty); pushes weights - model with them.
    EVALUATE: pulls the version named and calls evaluate(model, task) ->
    (num_examples, metrics); reports them. Without `evaluate`, an EVALUATE
    task raises TallyError (the server is waiting for the report).

    task.config holds the server's per-round settings (e.g. "lr").
    Returns {"fit": n, "evaluate": m}, the tasks served. Leaves at the end
    unless leave=False."""
    served = {"fit": 0, "evaluate": 0}
    client.join(attributes=attributes)
    try:
        for task in client.tasks(wait=wait, stop=stop):
            model = client.pull_model(task.model_version)
            if task.kind == "evaluate":
                if evaluate is None:
                    raise TallyError("the server sent an EVALUATE task: pass evaluate= to run()")
                num_examples, metrics = evaluate(model, task)
                client.report_evaluation(task, num_examples, metrics)
                served["evaluate"] += 1
                continue
            weights, num_samples, metrics = fit(model, task)
            client.push_update(weights=weights, base=model, round=task.round,
                               base_version=model.version, num_samples=num_samples,
                               local_steps=task.local_steps, metrics=metrics)
            served["fit"] += 1
    finally:
        if leave:
            client.leave()
    return served
