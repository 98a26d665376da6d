"""Helpers shared by the deployment tests (deploy_test.py,
deploy_loopback_test.py): the Metrics table of docs/reference.md, tally-server's
effective config, Prometheus text exposition, deploy/ YAML.
Standard library + Debian's python3-yaml only (run with /usr/bin/python3)."""
import os
import re
import socket
import subprocess

import yaml

METRICS_PAGE = "docs/reference.md"
METRICS_HEADING = "## Metrics"
# Histogram and summary series carry these suffixes on the family's name.
SERIES_SUFFIXES = ("_bucket", "_sum", "_count")


def documented_metrics(source_dir):
    """{metric name: set of label names} from the "Metrics" table of
    docs/reference.md."""
    with open(os.path.join(source_dir, METRICS_PAGE)) as f:
        lines = f.read().splitlines()
    # The heading line itself, not a longer one that starts the same.
    start = lines.index(METRICS_HEADING)
    metrics = {}
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        # "`codec`, `kind` = `full`, `delta`": the labels come before "=".
        labels = set(re.findall(r"`([a-z_]+)`", cells[2].split("=")[0]))
        metrics[cells[0].strip("`")] = labels
    if not metrics:
        raise ValueError(f"no metrics table under {METRICS_HEADING!r} in {METRICS_PAGE}")
    return metrics


def family_name(series, families):
    """The family a series name belongs to (strips histogram suffixes)."""
    if series in families:
        return series
    for suffix in SERIES_SUFFIXES:
        if series.endswith(suffix) and series[:-len(suffix)] in families:
            return series[:-len(suffix)]
    return series


def effective_config(server, config_path, extra_args=()):
    """tally-server --print_config for a config file (and flags such as
    --role=relay): {dotted field: [values]} with defaults applied. Raises
    CalledProcessError (with the server's message naming the field) for an
    invalid config."""
    out = subprocess.run([server, f"--config={config_path}", *extra_args, "--print_config"],
                         check=True, capture_output=True, text=True).stdout
    fields, path = {}, []
    for line in out.splitlines():
        line = line.strip()
        if line.endswith("{"):
            path.append(line[:-1].strip())
        elif line == "}":
            path.pop()
        elif ":" in line:
            key, value = line.split(":", 1)
            fields.setdefault(".".join(path + [key.strip()]), []).append(
                value.strip().strip('"'))
    return fields


# Where the Kubernetes manifests mount the Secret tally-tls, and the test
# PKI's file (tests/gen_test_pki.sh) standing in for each of its keys.
TLS_MOUNT = "/etc/tally/tls"
SECRET_TEST_FILES = {"tls.crt": "server.pem", "tls.key": "server.key", "ca.crt": "ca.pem"}


def make_test_pki(directory):
    """A throwaway CA, server (localhost) and client certificates in
    `directory` (made once); returns it."""
    if not os.path.isfile(os.path.join(directory, "ca.pem")):
        subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                     "gen_test_pki.sh"), directory], check=True)
    return directory


def to_test_pki(text, pki):
    """The Secret's paths in `text` replaced by the test PKI's files (the
    server reads them when it validates its config)."""
    for key, test_file in SECRET_TEST_FILES.items():
        text = text.replace(f"{TLS_MOUNT}/{key}", os.path.join(pki, test_file))
    return text


def from_test_pki(text, pki):
    for key, test_file in SECRET_TEST_FILES.items():
        text = text.replace(os.path.join(pki, test_file), f"{TLS_MOUNT}/{key}")
    return text


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_exposition(text):
    """Parses Prometheus text exposition (format 0.0.4). Returns
    {family: {"type", "help", "samples": [(series, {label: value}, float)]}};
    raises ValueError on a malformed line, a sample before its family's TYPE,
    or a TYPE/HELP given twice."""
    families, current = {}, None
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                family = families.setdefault(parts[2], {"type": None, "help": None,
                                                        "samples": []})
                key = parts[1].lower()
                if family[key] is not None:
                    raise ValueError(f"line {number}: second {parts[1]} for {parts[2]}")
                family[key] = parts[3] if len(parts) > 3 else ""
                current = parts[2]
            continue
        match = sample.match(line)
        if not match:
            raise ValueError(f"line {number}: not a sample: {line!r}")
        series, _, label_text, value = match.group(1, 2, 3, 4)
        name = family_name(series, families)
        if name != current or families[name]["type"] is None:
            raise ValueError(f"line {number}: {series} outside its family's TYPE block")
        labels = dict(label.findall(label_text or ""))
        families[name]["samples"].append((series, labels, float(value)))
    return families


def load_yaml_documents(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def deploy_yaml_files(source_dir):
    root = os.path.join(source_dir, "deploy")
    found = []
    for directory, _, files in os.walk(root):
        found += [os.path.join(directory, f) for f in files if f.endswith((".yml", ".yaml"))]
    return sorted(found)
