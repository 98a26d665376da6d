"""pytest setup for the tally Python SDK's tests.

Runs against the package in this source tree. The gRPC stubs come from
TALLY_PY_GEN (what the ctest entry passes: the build directory's python/,
filled by the tally_python_stubs target) or, if unset, are generated into a
temporary directory. C++ binaries (tally-server, tally-codec-vectors) come
from TALLY_BUILD_DIR (default: <repo>/build); tests needing a missing one
fail with the target to build.
"""
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)
REPO = os.path.normpath(os.path.join(PACKAGE_ROOT, "..", ".."))
sys.path.insert(0, PACKAGE_ROOT)

if not os.environ.get("TALLY_PY_GEN"):
    sys.path.insert(0, PACKAGE_ROOT)
    import gen_protos  # noqa: E402

    _gen = tempfile.mkdtemp(prefix="tally-pygen-")
    gen_protos.generate(_gen)
    os.environ["TALLY_PY_GEN"] = _gen

import pytest  # noqa: E402


def build_binary(name):
    build = os.environ.get("TALLY_BUILD_DIR", os.path.join(REPO, "build"))
    for path in (os.path.join(build, name), os.path.join(build, "server", name),
                 os.path.join(build, "tools", name)):
        if os.access(path, os.X_OK):
            return path
    pytest.fail(f"{name} not found under {build}: build it (ninja -C {build} {name}) or set "
                "TALLY_BUILD_DIR")


# The server's initial model is version 1 and each round publishes the next
# (core/model_store.h): a round's result is waited for with
# wait_for_version(INITIAL_VERSION), never wait_for_version(0), which returns
# the initial model at once when the round closes after the push returned.
INITIAL_VERSION = 1


def wait_until(condition, timeout=10.0):
    """Polls `condition` until it holds; fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server never reached the expected state"
        time.sleep(0.01)
