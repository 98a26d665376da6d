#!/usr/bin/python3
"""Generates tally's Python gRPC stubs from proto/ (never checked in).

    gen_protos.py --out DIR [--proto_dir DIR]

writes DIR/tally/v1/{tally,config}_pb2.py and tally_pb2_grpc.py with Debian's
protoc and grpc_python_plugin (packages protobuf-compiler,
protobuf-compiler-grpc). The generated modules import each other as
`tally.v1.*`, i.e. as a subpackage of the `tally` SDK package: setup.py
writes them into the package it installs; the tests and examples of a source
checkout write them into a build directory and name it in TALLY_PY_GEN
(tally/__init__.py adds DIR/tally to the package's search path).
"""
import argparse
import os
import shutil
import subprocess
import sys

PROTOS = ("tally/v1/secagg.proto", "tally/v1/tally.proto", "tally/v1/config.proto")
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))


def generate(out_dir, proto_dir=DEFAULT_PROTO_DIR):
    protoc = shutil.which("protoc") or "/usr/bin/protoc"
    plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    for tool, package in ((protoc, "protobuf-compiler"), (plugin, "protobuf-compiler-grpc")):
        if not os.access(tool, os.X_OK):
            raise RuntimeError(f"{tool} not found: install Debian's {package}")
    for proto in PROTOS:
        if not os.path.isfile(os.path.join(proto_dir, proto)):
            raise RuntimeError(f"{proto} not found under {proto_dir} (set TALLY_PROTO_DIR)")
    # Written to a temporary directory and moved into place, so that a
    # concurrent importer never sees half-written modules.
    target = os.path.join(out_dir, "tally", "v1")
    staging = target + f".tmp{os.getpid()}"
    os.makedirs(os.path.join(staging, "tally", "v1"), exist_ok=True)
    subprocess.run([protoc, f"--proto_path={proto_dir}", f"--python_out={staging}",
                    f"--grpc_python_out={staging}", f"--plugin=protoc-gen-grpc_python={plugin}",
                    *PROTOS], check=True)
    generated = os.path.join(staging, "tally", "v1")
    open(os.path.join(generated, "__init__.py"), "w").close()
    for name in os.listdir(generated):
        os.makedirs(target, exist_ok=True)
        os.replace(os.path.join(generated, name), os.path.join(target, name))
    shutil.rmtree(staging)
    return target


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory that receives tally/v1/")
    parser.add_argument("--proto_dir", default=os.environ.get("TALLY_PROTO_DIR", DEFAULT_PROTO_DIR))
    args = parser.parse_args()
    print(generate(args.out, args.proto_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
