#!/usr/bin/python3
"""The deployment's processes on loopback (issue 8): tally-server as its own
process on the deploy configs (deploy/config/*.textproto, the Kubernetes
ConfigMap's), their ports remapped to free ones and TLS files to a test
PKI: the image's standalone server, and compose's root with two relays
(`--role=relay --upstream=<root>`); clients as separate processes (one
tally-sim per relay, so a round at the root is one batch per relay) and
Python SDK clients; the container's and the manifests' health probes run
as written; /metrics of every process scraped over HTTP and its Prometheus
exposition parsed: well-formed, counters moved (the relays forwarded their
batches, the root accepted them), and every metric family and label
documented in the Metrics table of docs/reference.md.

    deploy_loopback_test.py --source_dir DIR --server tally-server
        --health tally-health --sim tally-sim
(with the Python SDK's stubs in $TALLY_PY_GEN, as for the python_sdk test)
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import deploy_common as dc  # noqa: E402

ARGS = None
ROUNDS = 3

# name -> (role, config file relative to the source tree), in start order:
# the image's standalone server; compose's root and its two relays (each
# with --upstream = the root; ids given, since they share a hostname here).
TOPOLOGY = {
    "server": ("server", "deploy/config/tally.textproto"),
    "root": ("root", "deploy/config/root.textproto"),
    "relay-1": ("relay", "deploy/config/relay.textproto"),
    "relay-2": ("relay", "deploy/config/relay.textproto"),
}


def repo(*parts):
    return os.path.join(ARGS.source_dir, *parts)


def with_address(command, address):
    """A probe command as written in a deploy file, aimed at `address`
    (absl flags: the last --address wins)."""
    return [ARGS.health if command[0] == "tally-health" else command[0], *command[1:],
            f"--address={address}"]


class Process:
    """One tally-server of the topology, on free loopback ports."""

    def __init__(self, name, role, config_text, work_dir, extra_args=()):
        from tally.testing import ServerProcess
        self.name, self.role = name, role
        self.metrics_port = dc.free_port()
        state = [] if role == "relay" else [  # A relay keeps no state.
            f"--checkpoint_dir={os.path.join(work_dir, name + '-checkpoints')}"]
        self.server = ServerProcess(ARGS.server, config_text, extra_args=[
            f"--metrics_port={self.metrics_port}", *state, *extra_args])
        self.target = self.server.target

    def scrape(self):
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            self.content_type = response.headers.get("Content-Type", "")
            return response.read().decode()

    def close(self):
        """SIGTERM; returns the exit code (0: drained)."""
        code = self.server.stop()
        self.server.close()
        return code


class DeployLoopbackTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.TemporaryDirectory(prefix="tally-loopback-")
        cls.processes = {}
        try:
            for name, (role, config) in TOPOLOGY.items():
                relay = ["--role=relay", f"--upstream={cls.processes['root'].target}",
                         f"--relay_id={name}"] if role == "relay" else []
                with open(repo(config)) as f:
                    cls.processes[name] = Process(name, role, f.read(), cls.work.name, relay)
            cls.server, cls.root = cls.processes["server"], cls.processes["root"]
            cls.relays = [p for p in cls.processes.values() if p.role == "relay"]
            cls.config = dc.effective_config(ARGS.server, repo(TOPOLOGY["server"][1]))
            cls.root_config = dc.effective_config(ARGS.server, repo(TOPOLOGY["root"][1]))
            cls.relay_config = dc.effective_config(
                ARGS.server, repo(TOPOLOGY["relay-1"][1]),
                ["--role=relay", f"--upstream={cls.root.target}"])
            cls.run_federation()
            cls.run_relayed_federation()
            cls.push_bad_updates()
            cls.scrapes = {name: p.scrape() for name, p in cls.processes.items()}
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for process in cls.processes.values():
            process.close()
        cls.work.cleanup()

    @classmethod
    def run_federation(cls):
        """tally-sim's clients (one process) through every round's quorum."""
        clients = int(cls.config["rounds.clients_per_round"][0])
        cls.sim_output = cls.wait_for_sims([cls.start_sim(cls.server, clients)])[0]

    @classmethod
    def run_relayed_federation(cls):
        """One tally-sim per relay, at once (a root round waits for a batch
        from each relay), each with a relay round's worth of clients."""
        clients = int(cls.relay_config["rounds.clients_per_round"][0])
        cls.wait_for_sims([cls.start_sim(relay, clients) for relay in cls.relays])

    @staticmethod
    def start_sim(process, clients):
        return process, subprocess.Popen(
            [ARGS.sim, f"--server={process.target}", f"--clients={clients}",
             f"--rounds={ROUNDS}", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)

    @classmethod
    def wait_for_sims(cls, sims):
        outputs = []
        for process, sim in sims:
            try:
                out, err = sim.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                sim.kill()
                out, err = sim.communicate()
            if sim.returncode != 0:
                logs = "".join(f"\n{p.name} log:\n{p.server.log()}"
                               for p in cls.processes.values())
                raise AssertionError(f"tally-sim against {process.name} exited "
                                     f"{sim.returncode}:\n{out}{err}{logs}")
            outputs.append(out)
        return outputs

    @classmethod
    def push_bad_updates(cls):
        """A client that sends a NaN (refused mid-stream) and one that pushes
        to a closed round (refused at the header)."""
        import tally
        cls.refusals = {}
        with tally.Client(cls.server.target, client_id="loopback-nan") as client:
            layout = client.join().layout
            task = client.get_task(wait=10)
            assert task.kind == "train", task
            delta = np.zeros(layout.num_params, np.float32)
            delta[-1] = np.nan
            try:
                client.push_update(delta=delta, round=task.round, base_version=task.model_version)
            except tally.RejectedUpdateError as e:
                cls.refusals["loopback-nan"] = e
        with tally.Client(cls.server.target, client_id="loopback-stale") as client:
            layout = client.join().layout
            try:
                client.push_update(delta=np.zeros(layout.num_params, np.float32),
                                   round=task.round - 1, base_version=task.model_version - 1)
            except tally.RpcError as e:
                cls.refusals["loopback-stale"] = e

    def families(self, name="server"):
        return dc.parse_exposition(self.scrapes[name])

    def value(self, metric, name="server", **labels):
        samples = self.families(name)[dc.family_name(metric, self.families(name))]["samples"]
        return sum(v for series, l, v in samples
                   if series == metric and all(l.get(k) == w for k, w in labels.items()))

    def test_the_probes_of_the_image_and_compose_pass(self):
        with open(repo("Dockerfile")) as f:
            healthcheck = re.search(r'HEALTHCHECK .*?CMD (\[.*?\])', f.read(), re.S).group(1)
        compose = dc.load_yaml_documents(repo("deploy", "docker-compose.yml"))[0]
        for command in (json.loads(healthcheck),
                        compose["services"]["tally-root"]["healthcheck"]["test"][1:]):
            for process in self.processes.values():
                out = subprocess.run(with_address(command, process.target), capture_output=True,
                                     text=True)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                self.assertIn("SERVING", out.stdout)

    def test_the_kubernetes_config_serves_tls_and_its_probes_pass(self):
        # The ConfigMap's config with the Secret's files from a test PKI; the
        # StatefulSet's probe commands as written, aimed at the free port and
        # at the test certificate's name.
        pki = dc.make_test_pki(os.path.join(self.work.name, "pki"))
        objects = dc.load_yaml_documents(repo("deploy", "k8s", "configmap.yaml"))
        config = dc.to_test_pki(objects[0]["data"]["config.textproto"], pki)
        self.assertNotIn(dc.TLS_MOUNT, config)
        statefulset = dc.load_yaml_documents(repo("deploy", "k8s", "statefulset.yaml"))[0]
        container = statefulset["spec"]["template"]["spec"]["containers"][0]
        process = Process("k8s-root", "root", config, self.work.name)
        try:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                command = [dc.to_test_pki(a, pki) for a in container[probe]["exec"]["command"]]
                command = with_address(command, process.target) + ["--tls_server_name=localhost"]
                out = subprocess.run(command, capture_output=True, text=True)
                self.assertEqual(out.returncode, 0, f"{probe}: {out.stdout}{out.stderr}")
            plaintext = subprocess.run([ARGS.health, f"--address={process.target}"],
                                       capture_output=True, text=True)
            self.assertEqual(plaintext.returncode, 2, "the gRPC port must speak TLS only")
            families = dc.parse_exposition(process.scrape())
            self.assertIn("tally_model_version", families)
        finally:
            self.assertEqual(process.close(), 0)

    def test_exposition_is_well_formed(self):
        for name, process in self.processes.items():
            families = self.families(name)
            self.assertIn("text/plain", process.content_type)
            for family, info in families.items():
                self.assertIsNotNone(info["help"], f"{name}: {family} has no HELP")
                self.assertIn(info["type"], ("counter", "gauge", "histogram", "summary"), family)
                if info["type"] == "counter":
                    self.assertTrue(family.endswith("_total"), family)
                    self.assertTrue(all(v >= 0 for _, _, v in info["samples"]), family)
                if info["type"] == "histogram":
                    self.check_histogram(family, info["samples"])

    def check_histogram(self, family, samples):
        by_labels = {}
        for series, labels, value in samples:
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            by_labels.setdefault(key, {"buckets": [], "count": None})
            if series.endswith("_bucket"):
                by_labels[key]["buckets"].append((float(labels["le"]), value))
            elif series.endswith("_count"):
                by_labels[key]["count"] = value
        for key, histogram in by_labels.items():
            buckets = sorted(histogram["buckets"])
            self.assertEqual(buckets[-1][0], float("inf"), family)
            counts = [c for _, c in buckets]
            self.assertEqual(counts, sorted(counts), f"{family}{key}: buckets not cumulative")
            self.assertEqual(counts[-1], histogram["count"], f"{family}{key}: +Inf != _count")

    def test_counters_moved(self):
        clients = int(self.config["rounds.clients_per_round"][0])
        self.assertGreaterEqual(self.value("tally_updates_accepted_total"), clients * ROUNDS)
        self.assertGreaterEqual(self.value("tally_rounds_completed_total"), ROUNDS)
        self.assertGreaterEqual(self.value("tally_model_version"), ROUNDS)
        self.assertGreaterEqual(self.value("tally_round_duration_seconds_count"), ROUNDS)
        self.assertGreater(self.value("tally_update_payload_bytes_total", codec="float32"), 0)
        self.assertGreater(self.value("tally_model_payload_bytes_total"), 0)
        self.assertEqual(self.value("tally_updates_rejected_total", reason="non_finite"), 1)
        self.assertEqual(self.value("tally_updates_rejected_total", reason="stale"), 1)
        self.assertEqual(set(self.refusals), {"loopback-nan", "loopback-stale"})

    def test_relays_forwarded_and_the_root_counted_their_batches(self):
        relays = [p.name for p in self.relays]
        self.assertEqual(int(self.root_config["rounds.clients_per_round"][0]), len(relays))
        relay_clients = int(self.relay_config["rounds.clients_per_round"][0])
        for name in relays:
            # Every round's batch forwarded, none lost; each batch was a
            # relay round of clients' updates.
            self.assertGreaterEqual(self.value("tally_relay_batches_forwarded_total", name),
                                    ROUNDS, name)
            self.assertEqual(self.value("tally_relay_batches_lost_total", name), 0, name)
            self.assertGreaterEqual(self.value("tally_updates_accepted_total", name),
                                    relay_clients * ROUNDS, name)
            self.assertGreaterEqual(self.value("tally_model_version", name), ROUNDS, name)
            self.assertGreaterEqual(self.value("tally_connected_clients", name), 0, name)
        # The root's accepted updates are the relays' batches: one per relay
        # and round, and no more (the clients never reached the root).
        forwarded = sum(self.value("tally_relay_batches_forwarded_total", n) for n in relays)
        self.assertEqual(self.value("tally_updates_accepted_total", "root"), forwarded)
        self.assertGreaterEqual(forwarded, len(relays) * ROUNDS)
        self.assertGreaterEqual(self.value("tally_rounds_completed_total", "root"), ROUNDS)
        self.assertEqual(self.value("tally_rounds_failed_total", "root"), 0)
        self.assertEqual(self.value("tally_relay_batches_forwarded_total", "root"), 0)
        # Relays serve the root's versions (pulled after the root publishes).
        for name in relays:
            self.assertLessEqual(self.value("tally_model_version", name),
                                 self.value("tally_model_version", "root"), name)

    def test_every_exported_metric_is_documented(self):
        # The Metrics table of docs/reference.md names every family /metrics
        # exports, with its labels (catches a metric added without
        # documentation).
        documented = dc.documented_metrics(ARGS.source_dir)
        implicit = {"histogram": {"le"}, "summary": {"quantile"}}
        for name in self.processes:
            for family, info in self.families(name).items():
                self.assertTrue(family in documented,
                                f"{name} exports {family}: add it to the Metrics "
                                "table of docs/reference.md")
                labels = set().union(*(set(l) for _, l, _ in info["samples"])) - \
                    implicit.get(info["type"], set())
                self.assertLessEqual(labels, documented[family], f"{family}'s labels")

    def test_every_rejected_update_is_logged_with_reason_and_client(self):
        log = self.server.server.log()
        for client, reason in (("loopback-nan", "non_finite"), ("loopback-stale", "stale")):
            self.assertRegex(log, rf"rejected update .*'{client}'.*\b{reason}\b")


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source_dir", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--health", required=True)
    parser.add_argument("--sim", required=True)
    ARGS, rest = parser.parse_known_args()
    sys.path.insert(0, repo("client", "python"))
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
