#!/usr/bin/python3
"""A tally client in Python over the C API (tally/tally_c.h) with ctypes:
the shape a Kotlin (JNI / JNA), Swift or Rust binding takes. Joins, and for
--rounds training tasks pulls the model into a buffer this program owns,
pushes a constant delta of 0.01 per parameter, and waits for the next
version; then checks that the model moved by 0.01 per round.

    ctypes_client.py --lib=build/client/libtally_client.so [--target=HOST:PORT]

(The Python SDK in client/python is the one to use from Python; this is a
binding example.) Exits 1 on any error, printing the C API's code and message.
"""
import argparse
import ctypes
import os
import sys


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 512),
                ("retry_after_ms", ctypes.c_int64)]


class JoinInfo(ctypes.Structure):
    _fields_ = [("model_version", ctypes.c_uint64), ("num_params", ctypes.c_uint64),
                ("layout_hash", ctypes.c_uint64), ("num_tensors", ctypes.c_uint32),
                ("max_chunk_bytes", ctypes.c_uint32), ("max_update_bytes", ctypes.c_uint64),
                ("heartbeat_interval_ms", ctypes.c_int64),
                ("upload_codec", ctypes.c_char * 16), ("download_codec", ctypes.c_char * 16)]


class Task(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("round", ctypes.c_uint64),
                ("model_version", ctypes.c_uint64), ("local_steps", ctypes.c_uint32),
                ("retry_after_ms", ctypes.c_int64)]


class ModelInfo(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint64), ("round", ctypes.c_uint64),
                ("payload_bytes", ctypes.c_uint64)]


class Update(ctypes.Structure):
    _fields_ = [("round", ctypes.c_uint64), ("base_version", ctypes.c_uint64),
                ("num_samples", ctypes.c_uint64), ("local_steps", ctypes.c_uint32),
                ("delta", ctypes.POINTER(ctypes.c_float)), ("delta_len", ctypes.c_size_t),
                ("update_id", ctypes.c_char_p)]


class PushResult(ctypes.Structure):
    _fields_ = [("update_id", ctypes.c_char * 129), ("duplicate", ctypes.c_int),
                ("round", ctypes.c_uint64), ("model_version", ctypes.c_uint64),
                ("attempts", ctypes.c_uint32), ("payload_bytes", ctypes.c_uint64)]


TASK_TRAIN, TASK_WAIT, TASK_DONE = 0, 1, 2


class TallyError(Exception):
    pass


class Client:
    """Owns one tally_client handle; close() (or the with-block) frees it."""

    def __init__(self, lib_path, options):
        self._lib = ctypes.CDLL(lib_path)
        self._declare()
        self._error = Error()
        opts = self._lib.tally_options_create()
        try:
            for name, value in options.items():
                self._check(self._lib.tally_options_set(
                    opts, name.encode(), str(value).encode(), ctypes.byref(self._error)))
            self._client = self._lib.tally_client_create(opts, ctypes.byref(self._error))
        finally:
            self._lib.tally_options_destroy(opts)
        if not self._client:
            self._check(self._error.code)

    def _declare(self):
        lib, p = self._lib, ctypes.c_void_p
        err = ctypes.POINTER(Error)
        lib.tally_options_create.restype = p
        lib.tally_options_destroy.argtypes = [p]
        lib.tally_options_set.argtypes = [p, ctypes.c_char_p, ctypes.c_char_p, err]
        lib.tally_client_create.restype = p
        lib.tally_client_create.argtypes = [p, err]
        lib.tally_client_destroy.argtypes = [p]
        lib.tally_client_join.argtypes = [p, ctypes.POINTER(JoinInfo), err]
        lib.tally_client_get_task.argtypes = [p, ctypes.c_int64, ctypes.POINTER(Task), err]
        lib.tally_client_pull_model.argtypes = [p, ctypes.c_uint64, ctypes.POINTER(ctypes.c_float),
                                                ctypes.c_size_t, ctypes.POINTER(ModelInfo), err]
        lib.tally_client_push_update.argtypes = [p, ctypes.POINTER(Update),
                                                 ctypes.POINTER(PushResult), err]
        lib.tally_client_wait_for_version.argtypes = [p, ctypes.c_uint64, ctypes.c_int64,
                                                      ctypes.POINTER(ctypes.c_uint64), err]
        lib.tally_code_name.restype = ctypes.c_char_p

    def _check(self, code):
        if code != 0:
            name = self._lib.tally_code_name(code).decode()
            raise TallyError(f"{name}: {self._error.message.decode()}")

    def _call(self, fn, *args):
        self._check(fn(self._client, *args, ctypes.byref(self._error)))

    def join(self):
        info = JoinInfo()
        self._call(self._lib.tally_client_join, ctypes.byref(info))
        return info

    def get_task(self, wait_ms):
        task = Task()
        self._call(self._lib.tally_client_get_task, wait_ms, ctypes.byref(task))
        return task

    def pull_model(self, version, params):
        """Writes the model into `params` (a ctypes float array we own)."""
        info = ModelInfo()
        self._call(self._lib.tally_client_pull_model, version, params, len(params),
                   ctypes.byref(info))
        return info

    def push_update(self, task, base_version, delta, num_samples):
        update = Update(task.round, base_version, num_samples, 1, delta, len(delta), None)
        result = PushResult()
        self._call(self._lib.tally_client_push_update, ctypes.byref(update),
                   ctypes.byref(result))
        return result

    def wait_for_version(self, after, timeout_ms):
        version = ctypes.c_uint64()
        self._call(self._lib.tally_client_wait_for_version, after, timeout_ms,
                   ctypes.byref(version))
        return version.value

    def close(self):
        if self._client:
            self._lib.tally_client_destroy(self._client)
            self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run(args):
    options = {"target": args.target, "client_id": args.client_id, "max_attempts": 4}
    with Client(args.lib, options) as client:
        join = client.join()
        n = join.num_params
        first = (ctypes.c_float * n)()
        params = (ctypes.c_float * n)()
        delta = (ctypes.c_float * n)(*([0.01] * n))
        rounds = 0
        while rounds < args.rounds:
            task = client.get_task(5000)
            if task.kind == TASK_DONE:
                break
            if task.kind != TASK_TRAIN:
                continue
            model = client.pull_model(task.model_version, params if rounds else first)
            pushed = client.push_update(task, model.version, delta, num_samples=10)
            client.wait_for_version(model.version, 30000)
            rounds += 1
            print(f"round {task.round}: pushed {pushed.payload_bytes} bytes "
                  f"(update {pushed.update_id.decode()})")
        client.pull_model(0, params)
    moved = [params[i] - first[i] for i in range(n)]
    if any(abs(m - 0.01 * rounds) > 1e-5 for m in moved):
        raise TallyError(f"the model moved by {moved[:4]}..., want {0.01 * rounds} each")
    print(f"ctypes_client: {rounds} rounds, model moved by {moved[0]:.4f} per parameter")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", required=True, help="path to libtally_client.so")
    parser.add_argument("--target", default=os.environ.get("TALLY_TARGET", "localhost:50051"))
    parser.add_argument("--client_id", default="ctypes-1")
    parser.add_argument("--rounds", type=int, default=3)
    try:
        run(parser.parse_args())
    except TallyError as e:
        print(f"ctypes_client: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
