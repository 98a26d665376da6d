"""`pip install client/python` works offline with Debian's pip and
setuptools, and the installed package carries freshly generated stubs.
Installs a copy of the package (pip builds in-tree) into a temporary
target."""
import os
import shutil
import subprocess
import sys

from conftest import PACKAGE_ROOT, REPO


def test_pip_install_offline(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(PACKAGE_ROOT, source, ignore=shutil.ignore_patterns(
        "tests", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    env = dict(os.environ, TALLY_PROTO_DIR=os.path.join(REPO, "proto"), PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation",
                    "--no-deps", "--target", str(tmp_path / "site"), str(source)],
                   check=True, env=env, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("TALLY_PY_GEN", "PYTHONPATH")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    out = subprocess.run([sys.executable, "-c", "import tally, tally.client; "
                          "from tally.v1 import tally_pb2; print(tally.__file__)"],
                         check=True, env=env, capture_output=True, text=True, cwd=tmp_path).stdout
    assert out.startswith(str(tmp_path / "site"))
