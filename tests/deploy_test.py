#!/usr/bin/python3
"""Checks the deployment files without a container engine (issue 8):

- Dockerfile: its build stage runs the scripts CI runs; its runtime stage
  installs the Debian packages of every library the installed binaries load
  (`cmake --install` into a scratch prefix, ldd, dpkg -S), runs as non-root,
  exposes the config's ports, health-checks them with tally-health.
- docker-compose.yml: `docker-compose config` (offline schema validation),
  mounted files exist and agree with the configs; the relays run
  `--role=relay` against the root's gRPC port with a config that validates,
  one per hostname, and the root's rounds wait for one batch per relay.
- Kubernetes manifests: required fields, probes, ports, volumes, labels and
  the ConfigMap's configs (tally-server --print_config, the relay's with
  --role=relay) agree; the relay Deployment's upstream is the root
  Service's gRPC port, its id is left to the hostname, its autoscaler and
  Service point at it, Prometheus finds root and relays.
- Prometheus: `promtool check config` (and the alert rules).
- Grafana: the dashboard parses, its PromQL parses (promtool check rules),
  and every metric it queries is in the Metrics table of docs/reference.md.
- Envoy (not in Debian: structure only): HTTP/2 to the relays' gRPC port
  with gRPC health checks, no route timeout.
- yamllint over deploy/.

    deploy_test.py --source_dir DIR --build_dir DIR --server tally-server
"""
import argparse
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_common as dc  # noqa: E402

ARGS = None
CONFIG_PATH = "/etc/tally/config.textproto"  # Where the image's server reads its config.


def repo(*parts):
    return os.path.join(ARGS.source_dir, *parts)


def read(*parts):
    with open(repo(*parts)) as f:
        return f.read()


def need_tool(name, package):
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} not found: install Debian's {package} "
                             "(scripts/install_deps.sh does)")
    return path


def deploy_config():
    return dc.effective_config(ARGS.server, repo("deploy", "config", "tally.textproto"))


def config_of(service):
    """The effective config of a compose service: the file mounted at
    CONFIG_PATH, read with the service's --role/--upstream flags."""
    source = next(v.split(":")[0] for v in service["volumes"]
                  if v.split(":")[1:2] == [CONFIG_PATH])
    flags = [a for a in service["command"] if a.startswith(("--role=", "--upstream="))]
    return dc.effective_config(ARGS.server, repo("deploy", source), flags)


def compose_relays():
    """{name: service} of the compose services that run --role=relay."""
    return {name: service for name, service in compose()["services"].items()
            if "--role=relay" in service.get("command", [])}


def flag_value(args, flag):
    """The last --flag=VALUE in a command line (absl: the last one wins)."""
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{flag}=")]
    return values[-1] if values else None


# ---------------------------------------------------------------------------
# Dockerfile


def dockerfile_stages():
    """[(from line, [(INSTRUCTION, arguments)])] with continuations joined."""
    text = re.sub(r"\\\n", " ", read("Dockerfile"))
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append((rest.strip(), []))
        else:
            stages[-1][1].append((instruction, " ".join(rest.split())))
    return stages


def exec_form(arguments):
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


class DockerfileTest(unittest.TestCase):
    def setUp(self):
        self.stages = dockerfile_stages()
        self.assertEqual(len(self.stages), 2, "want a build stage and a runtime stage")
        self.build, self.runtime = self.stages[0][1], self.stages[1][1]

    def test_stages_are_debian_bookworm(self):
        self.assertRegex(self.stages[0][0], r"^debian:bookworm\s+AS\s+build$")
        self.assertRegex(self.stages[1][0], r"^debian:bookworm(-slim)?\s+AS\s+runtime$")

    def test_build_stage_runs_the_scripts_ci_runs(self):
        runs = " && ".join(args for instruction, args in self.build if instruction == "RUN")
        install = runs.find("scripts/install_deps.sh")
        build = runs.find("scripts/build.sh")
        self.assertGreaterEqual(install, 0, "the build stage must run scripts/install_deps.sh")
        self.assertGreater(build, install, "then scripts/build.sh")
        self.assertNotIn("apt-get install", runs,
                         "build-stage packages belong in scripts/install_deps.sh")
        self.assertNotIn("CMAKE_BUILD_TYPE", runs, "scripts/build.sh sets Release")
        # And CI runs exactly these: .ci/run -> scripts/test.sh -> both scripts.
        self.assertIn("scripts/test.sh", read(".ci", "run"))
        test_sh = read("scripts", "test.sh")
        self.assertLess(test_sh.index("scripts/install_deps.sh"), test_sh.index("scripts/build.sh"))
        self.assertIn("CMAKE_BUILD_TYPE=Release", read("scripts", "build.sh"))

    def test_runtime_stage(self):
        config = deploy_config()
        grpc_port = dc.port_of(config["listen_address"][0])
        metrics_port = int(config["metrics_port"][0])
        instructions = dict(self.runtime)  # The last of each.
        user = instructions["USER"].split(":")[0]
        self.assertNotIn(user, ("root", "0"))
        self.assertRegex(user, r"^\d+$", "a numeric USER lets Kubernetes check runAsNonRoot")
        exposed = {int(p.split("/")[0]) for p in instructions["EXPOSE"].split()}
        self.assertEqual(exposed, {grpc_port, metrics_port})
        health = exec_form(instructions["HEALTHCHECK"].split(" CMD ", 1)[1])
        self.assertEqual(health[0], "tally-health")
        self.assertEqual(flag_value(health, "address"), f"127.0.0.1:{grpc_port}")
        self.assertEqual(exec_form(instructions["ENTRYPOINT"]), ["tally-server"])
        self.assertEqual(exec_form(instructions["CMD"]), [f"--config={CONFIG_PATH}"])
        copies = [a.split() for i, a in self.runtime if i == "COPY"]
        self.assertIn(["deploy/config/tally.textproto", CONFIG_PATH], copies)
        self.assertIn(config["checkpoint_dir"][0], exec_form(instructions["VOLUME"]))

    def test_runtime_packages_cover_the_installed_binaries(self):
        # What the image's `cmake --install` would copy, installed here into
        # a scratch prefix: every library it loads must come from a package
        # the runtime stage installs (or be ours, in its lib/).
        runs = " ".join(a for i, a in self.runtime if i == "RUN")
        packages = set(re.search(r"apt-get install (.*?)(&&|$)", runs).group(1).split())
        prefix = tempfile.mkdtemp(prefix="tally-install-", dir=ARGS.work_dir)
        subprocess.run(["cmake", "--install", ARGS.build_dir, "--prefix", prefix], check=True,
                       stdout=subprocess.DEVNULL)
        binaries = sorted(glob.glob(os.path.join(prefix, "bin", "*")))
        names = {os.path.basename(b) for b in binaries}
        self.assertLessEqual({"tally-server", "tally-health", "tally-sim", "tally"}, names)
        ours = glob.glob(os.path.join(prefix, "lib", "libtally_*.so*"))
        env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(prefix, "lib"))
        needed = {}
        for path in binaries + ours:
            out = subprocess.run(["ldd", path], env=env, check=True, capture_output=True,
                                 text=True).stdout
            self.assertNotIn("not found", out, f"{path} (installed, no build tree):\n{out}")
            for lib in re.findall(r"=> (/\S+)", out):
                if not lib.startswith(prefix):
                    needed.setdefault(lib, os.path.basename(path))
        owners = self.packages_of(needed)
        missing = {lib: (owners.get(lib, "no package owns it"), user)
                   for lib, user in needed.items()
                   if owners.get(lib) not in packages | {"libc6"}}
        self.assertEqual(missing, {}, "add these packages to the runtime stage's apt-get install")
        # The installed binaries run from the prefix alone (the image's layout).
        subprocess.run([os.path.join(prefix, "bin", "tally-server"),
                        f"--config={repo('deploy', 'config', 'tally.textproto')}",
                        "--print_config"], env=env, check=True, stdout=subprocess.DEVNULL)
        refused = subprocess.run([os.path.join(prefix, "bin", "tally-health"),
                                  "--address=127.0.0.1:1", "--timeout=1s"], env=env,
                                 capture_output=True, text=True)
        self.assertEqual(refused.returncode, 2, refused.stderr)  # Runs: no connection.

    @staticmethod
    def packages_of(libs):
        """{library path: Debian package} through one dpkg -S (merged-/usr
        systems list /lib/... files under /usr/lib/... or the other way)."""
        aliases = {}
        for lib in libs:
            for path in {lib, os.path.realpath(lib)}:
                for alias in (path, re.sub(r"^/usr/lib/", "/lib/", path),
                              re.sub(r"^/lib/", "/usr/lib/", path)):
                    aliases.setdefault(alias, set()).add(lib)
        out = subprocess.run(["dpkg", "-S", *sorted(aliases)], capture_output=True,
                             text=True).stdout
        owners = {}
        for line in out.splitlines():
            package, _, path = line.partition(": ")
            for lib in aliases.get(path.strip(), ()):
                owners[lib] = package.split(":")[0]
        return owners

    def test_dockerignore(self):
        ignored = {line.strip() for line in read(".dockerignore").splitlines()
                   if line.strip() and not line.startswith("#")}
        self.assertLessEqual({".git", "build", "build-*"}, ignored)
        for needed in ("scripts", "deploy", "proto", "server", "CMakeLists.txt"):
            self.assertNotIn(needed, ignored)


# ---------------------------------------------------------------------------
# docker-compose


def compose():
    return dc.load_yaml_documents(repo("deploy", "docker-compose.yml"))[0]


class RelayChecks:
    def check_relay_takes_dense_updates(self, relay_config, root_config):
        # Unset, a relay's max_update_bytes is derived from the root's model
        # when it connects; set, it must take a dense update of that model.
        if "limits.max_update_bytes" in relay_config:
            self.assertGreaterEqual(int(relay_config["limits.max_update_bytes"][0]),
                                    int(root_config["limits.max_update_bytes"][0]),
                                    "a relay must take a dense update of the root's model")


class ComposeTest(unittest.TestCase, RelayChecks):
    def test_docker_compose_validates_it(self):
        tool = need_tool("docker-compose", "docker-compose")
        out = subprocess.run([tool, "-f", repo("deploy", "docker-compose.yml"), "config", "-q"],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_services_agree_with_the_configs(self):
        services = compose()["services"]
        self.assertLessEqual({"tally-root", "envoy", "prometheus", "grafana"}, set(services))
        for name, service in services.items():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("."):
                    self.assertTrue(os.path.exists(repo("deploy", source)), f"{name}: {volume}")
        root = services["tally-root"]
        self.assertEqual(root["build"]["dockerfile"], "Dockerfile")
        self.assertTrue(os.path.isfile(repo("deploy", root["build"]["context"], "Dockerfile")))
        self.assertIn(f"./config/root.textproto:{CONFIG_PATH}:ro", root["volumes"])
        config = config_of(root)
        self.assertIn(f"checkpoints:{config['checkpoint_dir'][0]}", root["volumes"])
        for name, service in [("tally-root", root), *compose_relays().items()]:
            config = config_of(service)
            grpc_port = dc.port_of(config["listen_address"][0])
            self.assertEqual(service["image"], root["image"], name)
            self.assertEqual(flag_value(service["command"], "config"), CONFIG_PATH, name)
            self.assertEqual(flag_value(service["healthcheck"]["test"], "address"),
                             f"127.0.0.1:{grpc_port}", name)
            self.assertEqual(set(service["expose"]),
                             {str(grpc_port), config["metrics_port"][0]}, name)

    def test_relays_dial_the_root(self):
        services = compose()["services"]
        relays = compose_relays()
        self.assertEqual(len(relays), 2, "the compose file runs two relays")
        root_config = config_of(services["tally-root"])
        root_grpc = dc.port_of(root_config["listen_address"][0])
        # The root's rounds wait for one combined update per relay.
        self.assertEqual(int(root_config["rounds.clients_per_round"][0]), len(relays))
        hostnames = set()
        for name, relay in relays.items():
            self.assertEqual(flag_value(relay["command"], "upstream"), f"tally-root:{root_grpc}",
                             name)
            config = config_of(relay)  # Validated as a relay by --print_config.
            self.assertEqual(config["relay.upstream"], [f"tally-root:{root_grpc}"])
            self.assertNotIn("checkpoint_dir", config, f"{name}: a relay keeps no state")
            self.assertLess(int(config["rounds.round_timeout_ms"][0]),
                            int(root_config["rounds.round_timeout_ms"][0]),
                            f"{name}: its batch must reach the root before the root's timeout")
            self.assertEqual(relay["depends_on"]["tally-root"]["condition"], "service_healthy")
            self.check_relay_takes_dense_updates(config, root_config)
            # relay.id defaults to relay-<hostname>: one hostname per relay.
            self.assertIsNone(flag_value(relay["command"], "relay_id"), name)
            self.assertNotIn("relay.id", config, name)
            hostnames.add(relay["hostname"])
        self.assertEqual(len(hostnames), len(relays), "relay ids must be unique")
        envoy_waits_for = set(services["envoy"]["depends_on"])
        self.assertEqual(envoy_waits_for, set(relays), "Envoy starts once the relays are healthy")


# ---------------------------------------------------------------------------
# Kubernetes


def k8s_objects():
    objects = []
    for path in sorted(glob.glob(repo("deploy", "k8s", "*.yaml"))):
        for doc in dc.load_yaml_documents(path):
            objects.append((os.path.basename(path), doc))
    return objects


def k8s(kind, name=None):
    found = [doc for _, doc in k8s_objects()
             if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''} in deploy/k8s"
    return found


def root_container():
    statefulset = k8s("StatefulSet", "tally-root")[0]
    return statefulset, statefulset["spec"]["template"]["spec"]["containers"][0]


def relay_container():
    deployment = k8s("Deployment", "tally-relay")[0]
    return deployment, deployment["spec"]["template"]["spec"]["containers"][0]


def workloads():
    """(workload, its container) for the root and the relays."""
    return [root_container(), relay_container()]


def configmap_config(directory, workload=None):
    """The effective fields of the ConfigMap's config that a workload's
    --config names (default: the root's), validated by tally-server (with
    the container's --role) with the Secret's files stood in for by a test
    PKI."""
    workload, container = workload or root_container()
    mount = next(m for m in container["volumeMounts"]
                 if m["mountPath"] == flag_value(container["args"], "config"))
    volume = next(v for v in workload["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == mount["name"])
    configmap = k8s("ConfigMap", volume["configMap"]["name"])[0]
    pki = dc.make_test_pki(os.path.join(directory, "pki"))
    path = os.path.join(directory, f"k8s-{mount['subPath']}")
    with open(path, "w") as f:
        f.write(dc.to_test_pki(configmap["data"][mount["subPath"]], pki))
    flags = [a for a in container["args"] if a.startswith(("--role=", "--upstream="))]
    return {field: [dc.from_test_pki(v, pki) for v in values]
            for field, values in dc.effective_config(ARGS.server, path, flags).items()}


class KubernetesTest(unittest.TestCase, RelayChecks):
    def test_required_fields(self):
        for path, doc in k8s_objects():
            if doc.get("kind") == "Kustomization":
                continue
            for field in ("apiVersion", "kind"):
                self.assertIn(field, doc, path)
            self.assertTrue(doc.get("metadata", {}).get("name"), path)
            self.assertEqual(doc["metadata"].get("labels", {}).get("app.kubernetes.io/name"),
                             "tally", path)

    def test_statefulset(self):
        statefulset, container = root_container()
        spec = statefulset["spec"]
        self.assertEqual(statefulset["apiVersion"], "apps/v1")
        self.assertEqual(spec["replicas"], 1, "one root: it holds the authoritative model")
        pod_labels = spec["template"]["metadata"]["labels"]
        self.assertEqual(spec["selector"]["matchLabels"], pod_labels)
        headless = k8s("Service", spec["serviceName"])[0]
        self.assertEqual(headless["spec"]["clusterIP"], "None")
        self.assertEqual(container["image"], compose()["services"]["tally-root"]["image"])
        self.assertTrue(spec["template"]["spec"]["securityContext"]["runAsNonRoot"])
        # Checkpoints on the PersistentVolumeClaim, at the config's checkpoint_dir.
        config = configmap_config(ARGS.work_dir)
        claims = {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        self.assertEqual([n for n in claims if mounts.get(n) == config["checkpoint_dir"][0]],
                         list(claims))
        self.assertGreaterEqual(spec["template"]["spec"]["terminationGracePeriodSeconds"], 30)

    def test_ports_and_probes_match_the_config(self):
        for workload, container in workloads():
            with self.subTest(workload["metadata"]["name"]):
                self.check_ports_and_probes(workload, container)

    def check_ports_and_probes(self, workload, container):
        config = configmap_config(ARGS.work_dir, (workload, container))
        grpc_port = dc.port_of(config["listen_address"][0])
        metrics_port = int(config["metrics_port"][0])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        self.assertEqual(ports, {"grpc": grpc_port, "metrics": metrics_port})
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(annotations["prometheus.io/scrape"], "true")
        self.assertEqual(int(annotations["prometheus.io/port"]), metrics_port)
        tls = "tls.cert_file" in config
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertIn(probe, container, f"{probe} missing")
            spec = container[probe]
            if "grpc" in spec:
                self.assertFalse(tls, f"{probe}: Kubernetes' grpc probe cannot speak TLS")
                self.assertEqual(spec["grpc"]["port"], grpc_port)
                continue
            command = spec["exec"]["command"]
            self.assertEqual(command[0], "tally-health")
            self.assertEqual(flag_value(command, "address"), f"127.0.0.1:{grpc_port}")
            self.assertEqual(tls, flag_value(command, "tls_ca_file") is not None, probe)
            # The name the probe verifies is the workload's Service.
            if tls:
                self.assertEqual(flag_value(command, "tls_server_name"),
                                 workload["metadata"]["name"], probe)

    def test_tls_files_come_from_the_secret(self):
        secret = k8s("Secret", "tally-tls")[0]
        keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
        for workload, container in workloads():
            config = configmap_config(ARGS.work_dir, (workload, container))
            volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
            mount = next(m for m in container["volumeMounts"]
                         if volumes[m["name"]].get("secret", {}).get("secretName") == "tally-tls")
            files = [v[0] for k, v in config.items()
                     if k.startswith(("tls.", "relay.tls_")) and k.endswith("_file")]
            self.assertIn("tls.cert_file", config, "the gRPC port speaks TLS")
            files.append(flag_value(container["readinessProbe"]["exec"]["command"], "tls_ca_file"))
            for path in files:
                self.assertEqual(os.path.dirname(path), mount["mountPath"], path)
                self.assertIn(os.path.basename(path), keys, path)

    def test_relay_deployment(self):
        deployment, container = relay_container()
        spec = deployment["spec"]
        self.assertEqual(deployment["apiVersion"], "apps/v1")
        self.assertEqual(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
        self.assertEqual(container["image"], root_container()[1]["image"])
        self.assertEqual(flag_value(container["args"], "role"), "relay")
        self.assertTrue(spec["template"]["spec"]["securityContext"]["runAsNonRoot"])
        config = configmap_config(ARGS.work_dir, (deployment, container))
        # Its upstream is the root Service's gRPC port, which is the root's.
        root = k8s("Service", "tally-root")[0]
        grpc = next(p for p in root["spec"]["ports"] if p["name"] == "grpc")
        upstream = flag_value(container["args"], "upstream") or config["relay.upstream"][0]
        self.assertEqual(upstream, f"tally-root:{grpc['port']}")
        root_config = configmap_config(ARGS.work_dir)
        self.assertEqual(dc.port_of(root_config["listen_address"][0]),
                         dict((p["name"], p["containerPort"])
                              for p in root_container()[1]["ports"])[grpc["targetPort"]])
        # The relays verify the root's certificate when the root speaks TLS.
        if "tls.cert_file" in root_config:
            self.assertEqual(config["relay.tls_server_name"], ["tally-root"])
            self.assertIn("relay.tls_ca_file", config)
        # relay.id defaults to relay-<hostname> = relay-<pod name>: unique per
        # pod. A fixed id would make every replica the same client upstream.
        self.assertNotIn("relay.id", config)
        self.assertIsNone(flag_value(container["args"], "relay_id"))
        self.assertNotIn("checkpoint_dir", config, "a relay keeps no state")
        self.assertNotIn("volumeClaimTemplates", spec)
        self.check_relay_takes_dense_updates(config, root_config)
        self.assertLess(int(config["rounds.round_timeout_ms"][0]),
                        int(root_config["rounds.round_timeout_ms"][0]))

    def test_relay_autoscaler(self):
        deployment, _ = relay_container()
        hpa = k8s("HorizontalPodAutoscaler", "tally-relay")[0]
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        target = hpa["spec"]["scaleTargetRef"]
        self.assertEqual((target["apiVersion"], target["kind"], target["name"]),
                         ("apps/v1", "Deployment", deployment["metadata"]["name"]))
        self.assertLessEqual(hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
        # CPU utilization is relative to the container's request.
        self.assertIn("cpu", relay_container()[1]["resources"]["requests"])
        # Each root round waits for minReplicas relays' batches.
        root_config = configmap_config(ARGS.work_dir)
        self.assertEqual(int(root_config["rounds.clients_per_round"][0]),
                         hpa["spec"]["minReplicas"])

    def test_network_policy_lets_the_relays_reach_the_root(self):
        policy = k8s("NetworkPolicy", "tally-root")[0]
        root, _ = root_container()
        relay, _ = relay_container()
        self.assertEqual(policy["spec"]["podSelector"]["matchLabels"],
                         root["spec"]["template"]["metadata"]["labels"])
        grpc_from = [rule["from"] for rule in policy["spec"]["ingress"]
                     if {"port": "grpc"} in rule.get("ports", [])]
        self.assertEqual(grpc_from, [[{"podSelector": {"matchLabels": relay["spec"]["template"][
            "metadata"]["labels"]}}]])
        self.assertIn([{"port": "metrics"}],
                      [rule["ports"] for rule in policy["spec"]["ingress"] if "from" not in rule])

    def test_services_select_the_pods(self):
        pods = {}
        for workload, container in workloads():
            labels = workload["spec"]["template"]["metadata"]["labels"]
            pods[tuple(sorted(labels.items()))] = {p["name"] for p in container["ports"]}
        for service in k8s("Service"):
            selector = tuple(sorted(service["spec"]["selector"].items()))
            self.assertIn(selector, pods, service["metadata"]["name"])
            for port in service["spec"]["ports"]:
                self.assertIn(port["targetPort"], pods[selector])
        # The ServiceMonitor scrapes the metrics port of the root and the relays.
        monitor = k8s("ServiceMonitor")[0]
        selector = monitor["spec"]["selector"]

        def selects(service):
            labels = service["metadata"]["labels"]
            return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()) \
                and all(labels.get(e["key"]) in e["values"]
                        for e in selector.get("matchExpressions", []) if e["operator"] == "In")
        port = monitor["spec"]["endpoints"][0]["port"]
        scraped = {s["metadata"]["name"] for s in k8s("Service") if selects(s)
                   and any(p["name"] == port for p in s["spec"]["ports"])}
        self.assertEqual(scraped, {"tally-root", "tally-relay"})

    def test_kustomization_lists_the_manifests(self):
        kustomization = dc.load_yaml_documents(repo("deploy", "k8s", "kustomization.yaml"))[0]
        listed = set(kustomization["resources"])
        for name in listed:
            self.assertTrue(os.path.isfile(repo("deploy", "k8s", name)), name)
        # The Secret template and the Operator's ServiceMonitor stay out on purpose.
        files = {os.path.basename(p) for p in glob.glob(repo("deploy", "k8s", "*.yaml"))}
        self.assertEqual(files - listed,
                         {"kustomization.yaml", "secret.yaml", "servicemonitor.yaml"})


# ---------------------------------------------------------------------------
# Prometheus, Grafana, Envoy


def dashboard():
    with open(repo("deploy", "grafana", "dashboards", "tally.json")) as f:
        return json.load(f)


def dashboard_exprs():
    exprs = []

    def walk(panels):
        for panel in panels:
            walk(panel.get("panels", []))
            exprs.extend(t["expr"] for t in panel.get("targets", []))
    walk(dashboard()["panels"])
    return exprs


def metric_names(expr):
    return set(re.findall(r"\b(tally_[a-z0-9_]+)", expr))


class PrometheusGrafanaTest(unittest.TestCase):
    def setUp(self):
        self.documented = dc.documented_metrics(ARGS.source_dir)

    def documented_family(self, series):
        return dc.family_name(series, self.documented) in self.documented

    def test_promtool_checks_the_config_and_alerts(self):
        promtool = need_tool("promtool", "prometheus")
        out = subprocess.run([promtool, "check", "config",
                              repo("deploy", "prometheus", "prometheus.yml")],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("SUCCESS", out.stdout)
        alerts = dc.load_yaml_documents(repo("deploy", "prometheus", "alerts.yml"))[0]
        for rule in alerts["groups"][0]["rules"]:
            for name in metric_names(rule["expr"]):
                self.assertTrue(self.documented_family(name), f"{rule['alert']}: {name}")

    def test_prometheus_scrapes_the_compose_services(self):
        prometheus = dc.load_yaml_documents(repo("deploy", "prometheus", "prometheus.yml"))[0]
        targets = {job["job_name"]: [t for group in job["static_configs"]
                                     for t in group["targets"]]
                   for job in prometheus["scrape_configs"]}
        services = compose()["services"]
        tally = {name: config_of(services[name])["metrics_port"][0]
                 for name in ["tally-root", *compose_relays()]}
        self.assertEqual(sorted(targets["tally"]),
                         sorted(f"{name}:{port}" for name, port in tally.items()))
        envoy = dc.load_yaml_documents(repo("deploy", "envoy", "envoy.yaml"))[0]
        admin_port = envoy["admin"]["address"]["socket_address"]["port_value"]
        self.assertEqual(targets["envoy"], [f"envoy:{admin_port}"])
        for job in targets.values():
            for target in job:
                host = target.split(":")[0]
                self.assertTrue(host == "localhost" or host in services, target)

    def test_dashboard_queries_documented_metrics(self):
        board = dashboard()
        self.assertEqual(board["uid"], "tally")
        queried = set()
        for expr in dashboard_exprs():
            queried |= metric_names(expr)
        undocumented = {m for m in queried if not self.documented_family(m)}
        self.assertEqual(undocumented, set(), "not in the Metrics table of docs/reference.md")
        # The views issue 8 asks for: ingest, rejects, latency, staleness,
        # clients, model version, bytes by codec (up and down).
        for metric in ("tally_updates_accepted_total", "tally_updates_rejected_total",
                       "tally_round_duration_seconds_bucket",
                       "tally_aggregation_duration_seconds_bucket",
                       "tally_update_staleness_bucket", "tally_connected_clients",
                       "tally_model_version", "tally_update_payload_bytes_total",
                       "tally_update_dense_bytes_total", "tally_model_payload_bytes_total",
                       "tally_model_dense_bytes_total"):
            self.assertIn(metric, queried)

    def test_dashboard_promql_parses(self):
        # Each query as a recording rule through promtool check rules, with
        # Grafana's variables replaced by what Grafana would substitute.
        promtool = need_tool("promtool", "prometheus")
        rules = [{"record": f"tally:dashboard_query_{i}",
                  "expr": expr.replace("$__rate_interval", "1m").replace("$instance", ".*")}
                 for i, expr in enumerate(dashboard_exprs())]
        self.assertGreater(len(rules), 10)
        path = os.path.join(ARGS.work_dir, "dashboard_rules.yml")
        with open(path, "w") as f:
            json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)  # JSON is YAML.
        out = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)

    def test_grafana_provisioning_matches_compose(self):
        grafana = compose()["services"]["grafana"]
        mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
        source = dc.load_yaml_documents(
            repo("deploy", "grafana", "provisioning", "datasources", "prometheus.yml"))[0]
        self.assertEqual(source["datasources"][0]["url"], "http://prometheus:9090")
        self.assertIn("9090:9090", " ".join(compose()["services"]["prometheus"]["ports"]))
        provider = dc.load_yaml_documents(
            repo("deploy", "grafana", "provisioning", "dashboards", "tally.yml"))[0]
        self.assertEqual(mounts["./grafana/dashboards"],
                         provider["providers"][0]["options"]["path"])
        self.assertEqual(mounts["./grafana/provisioning"], "/etc/grafana/provisioning")

    def test_envoy_balances_grpc_to_the_relays(self):
        envoy = dc.load_yaml_documents(repo("deploy", "envoy", "envoy.yaml"))[0]
        relays = compose_relays()
        cluster = envoy["static_resources"]["clusters"][0]
        options = cluster["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        self.assertIn("http2_protocol_options", options["explicit_http_config"])
        self.assertIn("grpc_health_check", cluster["health_checks"][0])
        endpoints = [e["endpoint"]["address"]["socket_address"]
                     for group in cluster["load_assignment"]["endpoints"]
                     for e in group["lb_endpoints"]]
        self.assertEqual(endpoints, [
            {"address": name, "port_value": dc.port_of(config_of(relay)["listen_address"][0])}
            for name, relay in relays.items()])
        listener = envoy["static_resources"]["listeners"][0]
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        self.assertEqual(manager["codec_type"], "HTTP2")
        route = manager["route_config"]["virtual_hosts"][0]["routes"][0]
        self.assertEqual(route["route"]["cluster"], cluster["name"])
        self.assertEqual(route["route"]["timeout"], "0s", "long-polls and WatchModel streams")
        listen_port = listener["address"]["socket_address"]["port_value"]
        published = compose()["services"]["envoy"]["ports"]
        grpc_port = dc.port_of(deploy_config()["listen_address"][0])
        self.assertIn(f"{grpc_port}:{listen_port}", published)


class YamlTest(unittest.TestCase):
    def test_every_deploy_yaml_parses_and_lints(self):
        files = dc.deploy_yaml_files(ARGS.source_dir)
        self.assertGreaterEqual(len(files), 10)
        for path in files:
            dc.load_yaml_documents(path)
        yamllint = need_tool("yamllint", "yamllint")
        config = "{extends: default, rules: {line-length: {max: 140}, document-start: disable, " \
                 "comments: {min-spaces-from-content: 1}, truthy: {check-keys: false}}}"
        out = subprocess.run([yamllint, "-s", "-f", "parsable", "-d", config, *files],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)


class MetricsDocTest(unittest.TestCase):
    def test_documented_metrics_exist_in_the_server(self):
        source = ""
        for path in glob.glob(repo("server", "*.cc")):
            with open(path) as f:
                source += f.read()
        documented = dc.documented_metrics(ARGS.source_dir)
        self.assertGreater(len(documented), 20)
        stale = [m for m in documented
                 if m.startswith("tally_") and f'"{m}"' not in source
                 and f'"{m.removesuffix("_total")}"' not in source]
        self.assertEqual(stale, [], "documented in docs/reference.md but not exported by server/")


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source_dir", required=True)
    parser.add_argument("--build_dir", required=True)
    parser.add_argument("--server", required=True, help="tally-server binary")
    ARGS, rest = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="tally-deploy-test-") as work_dir:
        ARGS.work_dir = work_dir
        unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
