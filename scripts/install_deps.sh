#!/usr/bin/env bash
# Installs the Debian 12 packages tally needs to build, test and run, if any
# is missing. Debian packages only: nothing else is downloaded.
#   scripts/install_deps.sh          the native build (and the Dockerfile's)
#   scripts/install_deps.sh --edge   the arm64 cross build and qemu-user of
#                                    scripts/edge_test.sh (adds the arm64
#                                    architecture to dpkg)
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libssl-dev openssl prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenblas-dev libzstd-dev zlib1g-dev curl python3
  clang-14 libclang-rt-14-dev  # scripts/fuzz.sh: libFuzzer
  # The Python SDK (client/python), its tests and examples/pytorch_digits.py.
  python3-grpcio python3-protobuf python3-numpy python3-zstandard python3-pytest
  python3-cryptography  # tally/secagg_crypto.py: X25519, HKDF, AES-GCM, AES-CTR.
  python3-setuptools python3-pip python3-torch python3-sklearn python3-matplotlib
  python3-venv python3-wheel  # README's install: a venv over these packages.
  # tests/deploy_test.py: the deployment files' validators (deploy/).
  python3-yaml yamllint docker-compose prometheus
  python3-mpmath  # tools/privacy_test.py: the accountant's independent reference.
)

# Multiarch: an :arm64 -dev package installs beside its native twin only at
# the same version, so apt also brings the native one to the archive's
# current version (e.g. a newer libssl-dev security update).
EDGE_PACKAGES=(
  crossbuild-essential-arm64 qemu-user
  libgrpc++-dev:arm64 libprotobuf-dev:arm64 libabsl-dev:arm64 libzstd-dev:arm64
  libssl-dev:arm64 libgtest-dev:arm64 libgmock-dev:arm64
)
edge=false
if [ "${1:-}" = "--edge" ]; then
  edge=true
  PACKAGES=("${EDGE_PACKAGES[@]}")
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install_deps: missing packages (${missing[*]}) and not root; install them and rerun" >&2
    exit 1
  fi
fi
if $edge && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
fi
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
