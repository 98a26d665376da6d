#!/usr/bin/env bash
# Runs the README's install commands of the Python SDK, exactly as written
# (the first ```sh block of its "## Python SDK" section), the way a user of a
# fresh Debian 12 does: Debian's /usr/bin/python3, a clean environment (no
# PYTHONPATH, no pyenv on PATH), HOME in a temporary directory, from a copy
# of the repository's client/python and proto/. Then the installed package
# joins a real tally-server from outside the source tree, pulls and pushes.
#
#   tests/python_install_test.sh <source dir> <tally-server> <temp dir>
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 <source dir> <tally-server> <temp dir>" >&2
  exit 2
fi
source_dir=$(cd "$1" && pwd)
server_bin=$2
rm -rf "$3"
mkdir -p "$3"
tmp_dir=$(cd "$3" && pwd)

fail() {
  echo "python_install_test: FAIL: $*" >&2
  exit 1
}

# The commands: the README's block, which client/python/README.md repeats.
cd "$source_dir"
commands=$(awk '/^## Python SDK/ { section = 1; next }
                section && /^## / { exit }
                section && /^```sh$/ { block = 1; next }
                block && /^```$/ { exit }
                block { print }' README.md)
[[ -n $commands ]] || fail "no \`\`\`sh block in README.md's \"## Python SDK\" section"
while IFS= read -r line; do
  grep -qF -- "$line" client/python/README.md ||
    fail "client/python/README.md lacks the README's install line: $line"
done <<<"$commands"
echo "README's install commands:"
echo "$commands"

# What a user has after `git clone`: no build output in the package.
checkout=$tmp_dir/checkout
mkdir -p "$checkout/client" "$tmp_dir/home"
cp -r "$source_dir/proto" "$checkout/proto"
cp -r "$source_dir/client/python" "$checkout/client/python"
rm -rf "$checkout/client/python/"{build,tests,*.egg-info}
find "$checkout" -name __pycache__ -prune -exec rm -rf {} +

clean_env=(env -i "HOME=$tmp_dir/home" "PATH=/usr/local/bin:/usr/bin:/bin" "LANG=C.UTF-8")
(cd "$checkout" && "${clean_env[@]}" bash -euo pipefail -c "$commands") \
  >"$tmp_dir/install.log" 2>&1 || fail "the install commands failed: $(cat "$tmp_dir/install.log")"

# The interpreter the commands installed into: the python beside the pip
# they ran (~/tally-venv/bin/pip -> ~/tally-venv/bin/python).
pip=$(grep -oE '[^ ]*/bin/pip[0-9.]*' <<<"$commands" | head -n 1) ||
  fail "the README's commands run no <venv>/bin/pip"
python=$(dirname "${pip/#\~/$tmp_dir/home}")/python
[[ -x $python ]] || fail "no $python after the install commands"

# Against a real server, from a directory outside the checkout.
source "$source_dir/tests/tally_server.sh"
start_tally_server "$server_bin" "$tmp_dir"
output=$(cd "$tmp_dir" && "${clean_env[@]}" "$python" - "$server_target" <<'PY' 2>&1
import sys

import numpy as np
import tally

assert "/site-packages/tally/" in tally.__file__, tally.__file__
client = tally.Client(sys.argv[1], client_id="venv-user")
joined = client.join()
task = client.get_task(wait=10)
model = client.pull_model()
assert model.params.shape == (joined.layout.num_params,)
pushed = client.push_update(delta=np.zeros(joined.layout.num_params, np.float32),
                            round=task.round, base_version=model.version)
print("installed at", tally.__file__, "joined, pulled version", model.version, "pushed",
      pushed.update_id)
client.leave()
PY
) || fail "the installed SDK against tally-server: $output"
echo "$output"
echo "python_install_test: OK"
