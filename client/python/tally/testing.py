"""A tally-server child process for tests and examples (like
bench/server_process.cc): written config, a free port on 127.0.0.1 (or the
one given: a restarted server on the port of a stopped one), stopped with
SIGTERM (it drains and exits 0).

    with ServerProcess("build/server/tally-server", 'rounds { clients_per_round: 2 }') as s:
        client = tally.Client(s.target, client_id="a")
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time


class ServerProcess:
    def __init__(self, binary, config_text="", extra_args=(), start_timeout=30.0, port=0):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="tally-server-")
        self.config_path = os.path.join(self.dir, "config.textproto")
        self.log_path = os.path.join(self.dir, "server.log")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        port_file = os.path.join(self.dir, "port")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config={self.config_path}", f"--port_file={port_file}",
                 f"--listen=127.0.0.1:{port}", "--metrics_port=-1", *extra_args],
                stdout=log, stderr=subprocess.STDOUT)
        self.port = self._wait_for_port(port_file, start_timeout)
        self.target = f"127.0.0.1:{self.port}"

    def _wait_for_port(self, port_file, timeout):
        deadline, previous = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"tally-server exited with {self.process.returncode} before "
                                   f"serving:\n{self.log()}")
            try:
                with open(port_file) as f:
                    text = f.read().strip()
            except OSError:
                text = ""
            # The file may be read half-written: take a port seen twice.
            if text.isdigit() and text == previous:
                return int(text)
            previous = text
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"tally-server did not write its port within {timeout} s")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout=30.0):
        """SIGTERM, wait (SIGKILL after `timeout`); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
