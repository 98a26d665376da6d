"""Packaging of the tally Python SDK (metadata in pyproject.toml).

The build step generates the gRPC stubs (tally/v1/*_pb2*.py) from the
repository's proto/ (or TALLY_PROTO_DIR) with Debian's protoc and
grpc_python_plugin into the package being built; they are never checked in.

    /usr/bin/python3 -m venv --system-site-packages ~/tally-venv
    ~/tally-venv/bin/pip install --no-build-isolation --no-deps client/python
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_protos  # noqa: E402


class BuildPyWithStubs(build_py):
    def run(self):
        super().run()
        proto_dir = os.environ.get("TALLY_PROTO_DIR", gen_protos.DEFAULT_PROTO_DIR)
        gen_protos.generate(self.build_lib, proto_dir)


setup(cmdclass={"build_py": BuildPyWithStubs})
