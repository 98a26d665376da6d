"""tally.Client: one training client of a tally federation (the Python
counterpart of client/include/tally/client.h).

    client = tally.Client("localhost:50051", client_id="worker-1")
    joined = client.join()
    for task in client.train_tasks():                       # until the server says done
        model = client.pull_model()
        delta = train(model.params) - model.params         # or a state_dict delta
        client.push_update(delta=delta, round=task.round, base_version=model.version,
                           num_samples=len(my_data))   # or weights=..., base=model
    client.leave()

Transient failures (UNAVAILABLE, DEADLINE_EXCEEDED) are retried with
exponential backoff and full jitter; RESOURCE_EXHAUSTED after the delay the
server hints; an update keeps its update id across retries, and ALREADY_EXISTS
(the server already had it) is success with duplicate=True. A lost session
(UNAUTHENTICATED) is re-joined once, transparently. Calls that fail for good
raise an exception named for the cause (tally.errors: AuthenticationError,
PermissionDeniedError, ConnectionFailedError / TlsError,
ResourceExhaustedError, RejectedUpdateError, ...). Pulled models are checked
against the layout Join returned (LayoutMismatchError, LengthMismatchError);
compressed models and deltas between versions are decoded (CodecError for a
bad payload). Uploads are encoded with the codec Join assigned (with error
feedback), or run through Deep Gradient Compression (dgc=DgcSettings(...)).

Thread safety: a Client may be used from several threads (e.g. heartbeat()
from a timer while push_update() runs); pulls and pushes of one client are
serialized where they share state (error feedback, DGC, the held model).
"""
import dataclasses
import hashlib
import random
import threading
import time
import uuid

import grpc
import numpy as np

from tally import _connection, _retry, _wire, codecs
from tally._tls_files import read_tls_files
from tally.dgc import DgcCompressor, DgcSettings
from tally.error_feedback import ErrorFeedback
from tally.privacy import LocalDp, apply_local_dp
from tally.error_feedback import suits as error_feedback_suits
from tally.errors import AuthenticationError, ClientIdInUseError, CodecError, \
    ConnectionFailedError, LengthMismatchError, NotJoinedError, PermissionDeniedError, \
    RejectedUpdateError, ResourceExhaustedError, RpcError, SessionExpiredError, TallyError, \
    UnsupportedError, UpdateTooLargeError
from tally.layout import ModelLayout
from tally.workflow import check_attributes, check_metrics, task_config

SDK_VERSION = "python-0.1.0"
UPLOAD_CODECS = ("float32", "float16", "bfloat16", "int8", "qsgd", "sign", "topk", "randk")
DOWNLOAD_CODECS = ("float32", "float16", "bfloat16", "int8")
DELTA_CODECS = ("float32", "float16", "bfloat16", "int8", "sign", "topk")
_REJECTIONS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ABORTED,
               grpc.StatusCode.FAILED_PRECONDITION)


@dataclasses.dataclass
class JoinResult:
    layout: ModelLayout
    model_version: int
    upload_codec: codecs.CodecSpec  # What push_update encodes with.
    download_codec: codecs.CodecSpec  # Full models.
    delta_codec: object  # codecs.CodecSpec of deltas between versions, or None.
    max_chunk_bytes: int
    max_update_bytes: int
    heartbeat_interval: float  # Seconds.


@dataclasses.dataclass
class Task:
    # "train", "evaluate" (pull model_version, evaluate it on local data,
    # report_evaluation), "wait" or "done".
    kind: str
    round: int = 0
    model_version: int = 0
    local_steps: int = 0  # 0 = the client decides.
    deadline: object = None  # Unix seconds, or None.
    retry_after: float = 0.0  # Seconds (WAIT).
    # The server's per-round settings, name -> float or str (e.g. "lr").
    config: dict = dataclasses.field(default_factory=dict)
    evaluation_id: int = 0  # "evaluate": echoed by report_evaluation.


@dataclasses.dataclass
class Model:
    version: int
    round: int
    params: np.ndarray  # float32, layout.num_params.
    layout: ModelLayout
    payload_bytes: int = 0  # Bytes received (all segments).
    segments: int = 1  # Segments of the stream (a full model and / or deltas).
    delta_segments: int = 0  # Deltas applied (0: a full model).

    def tensors(self):
        """name -> numpy array (views of params), shaped by the model spec."""
        return self.layout.unflatten(self.params)

    def state_dict(self, like):
        """name -> torch tensor with the dtypes and devices of `like`."""
        return self.layout.unflatten(self.params, like=like)


@dataclasses.dataclass
class PushResult:
    update_id: str
    duplicate: bool = False  # The server already had this update.
    round: int = 0
    model_version: int = 0
    attempts: int = 0
    payload_bytes: int = 0  # Bytes sent (after compression).


@dataclasses.dataclass
class _Session:
    token: str
    join: JoinResult
    chunk_bytes: int


def _update_delta(layout, ambiguous, delta, weights, base):
    """The flat float32 delta of push_update's arguments, checked."""
    if ambiguous:
        raise TallyError("push_update: name the update: delta=local - base, or weights=local "
                         "with base=the model it was trained from (a pulled tally.Model or its "
                         "state_dict); weights pushed as a delta would add the whole model to "
                         "the global model")
    if (delta is None) == (weights is None):
        raise TallyError("push_update: give delta= or weights= (with base=), "
                         + ("not both" if delta is not None else "neither was given"))
    if delta is not None and base is not None:
        raise TallyError("push_update: base= goes with weights=; delta= is already local - base")
    if weights is not None and base is None:
        raise TallyError("push_update: weights= needs base=, the model they were trained from "
                         "(the pulled tally.Model, its params or the state_dict loaded before "
                         "training): the server takes deltas")

    def flat(x, what):
        if isinstance(x, Model):
            x = x.params
        x = layout.flatten(x) if isinstance(x, dict) else x
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(-1))
        if x.size != layout.num_params:
            raise LengthMismatchError(f"push_update: {what} has {x.size} floats, the model has "
                                      f"{layout.num_params}")
        return x

    if delta is not None:
        return flat(delta, "delta")
    return flat(weights, "weights") - flat(base, "base")


def _codec_names(names, allowed, what):
    names = tuple(names)
    for name in names:
        if name not in allowed:
            raise TallyError(f"{what}: '{name}' is not one of {', '.join(allowed)}")
    return names


class Client:
    """A connection to one tally server and this client's session.

    target: "host:port". client_id: 1..128 chars of [A-Za-z0-9._:@-].
    Security: ca_file (PEM) turns on TLS; cert_file + key_file add a client
    certificate (mutual TLS); token is sent as "authorization: Bearer ..."
    (needs TLS); server_name overrides the name checked in the server's
    certificate. upload_codecs: codecs offered for updates (the server
    assigns one; float32 always). download_codecs / delta_codecs: codecs
    this client accepts for pulled models and for deltas between versions.
    By default every one (DOWNLOAD_CODECS, DELTA_CODECS), so the server's
    compression.download / download_delta configuration decides, as with
    the C++ SDK's ClientOptions.download_codecs. Given download_codecs and
    no delta_codecs, deltas are taken only in the codecs listed there (the
    C++ SDK's one list): download_codecs=["float32"] asks for the exact
    model every time; delta_codecs=() takes no deltas. error_feedback: keep
    what contractive lossy upload codecs (float16, bfloat16, int8, sign,
    topk, biased randk) drop and add it to the next update; never for qsgd
    and rescaled randk, whose residual would grow. dgc: a
    tally.DgcSettings runs every update through Deep Gradient Compression
    (tally.dgc; state kept per Client and adopted when a push is
    acknowledged; error_feedback does not apply, DGC's velocity keeps what
    was not sent): topk is offered at join(), which raises
    UnsupportedError unless the server assigns it (its compression.upload
    must list topk); use the server optimizer "sgd". Retries:
    max_attempts per call, backoff initial_backoff * backoff_multiplier^n
    capped at max_backoff (seconds), full jitter. connect_timeout: how long
    a call waits for a connection to the server (one not up yet, e.g.
    starting in a container, or restarting) before ConnectionFailedError;
    not counted in max_attempts. A TLS set-up that cannot work (TLS on one
    side only, a refused server or client certificate) raises TlsError at
    once, saying what to change.
    seed: seeds jitter and update ids (tests only: a fixed seed repeats ids).
    local_dp: a tally.LocalDp clips every update and adds discrete Gaussian
    noise (OS CSPRNG) before encoding and error feedback, and declares it
    at join() with its per-round epsilon (docs/privacy.md#local-dp).
    """

    def __init__(self, target, client_id, *, ca_file=None, cert_file=None, key_file=None,
                 token=None, server_name=None, upload_codecs=(), download_codecs=None,
                 delta_codecs=None, error_feedback=True, dgc=None, max_attempts=6,
                 initial_backoff=0.1, max_backoff=5.0, backoff_multiplier=2.0,
                 call_timeout=60.0, transfer_timeout=1800.0, connect_timeout=60.0,
                 chunk_bytes=1 << 20, seed=None, local_dp=None):
        if not client_id or len(client_id) > 128 or not all(
                c.isascii() and (c.isalnum() or c in "._:@-") for c in client_id):
            raise TallyError(f"client_id '{client_id}': must be 1..128 characters of "
                             "[A-Za-z0-9._:@-]")
        if max_attempts < 1 or chunk_bytes < 4 or min(call_timeout, transfer_timeout,
                                                      connect_timeout) <= 0:
            raise TallyError("max_attempts >= 1, chunk_bytes >= 4 and positive timeouts needed")
        if (cert_file is None) != (key_file is None):
            raise TallyError("cert_file and key_file: set both or neither")
        if ca_file is None and (cert_file or token or server_name):
            raise TallyError("ca_file: client certificates, tokens and server_name need TLS")
        self.target, self.client_id = target, client_id
        self.upload_codecs = _codec_names(upload_codecs, UPLOAD_CODECS, "upload_codecs")
        given = download_codecs is not None
        self.download_codecs = _codec_names(download_codecs if given else DOWNLOAD_CODECS,
                                            DOWNLOAD_CODECS, "download_codecs")
        if delta_codecs is None:  # As the C++ SDK's one list of download codecs.
            delta_codecs = self.download_codecs if given else DELTA_CODECS
        self.delta_codecs = _codec_names(delta_codecs, DELTA_CODECS, "delta_codecs")
        self.error_feedback = error_feedback
        if dgc is not None:
            if not isinstance(dgc, DgcSettings):
                raise TallyError("dgc: expected a tally.DgcSettings")
            try:  # The settings alone, on a one-tensor model.
                DgcCompressor([(0, 1, 2)], dgc)
            except CodecError as e:
                raise TallyError(f"dgc: {e}") from None
        self.dgc = dgc
        if local_dp is not None and not isinstance(local_dp, LocalDp):
            raise TallyError("local_dp: expected a tally.LocalDp")
        self.local_dp = local_dp
        self.max_attempts = max_attempts
        self.call_timeout, self.transfer_timeout = call_timeout, transfer_timeout
        self.chunk_bytes = chunk_bytes
        self._backoff = _retry.Backoff(initial_backoff, max_backoff, backoff_multiplier, seed)
        self._ids = random.Random(seed) if seed is not None else None
        options = [("grpc.max_receive_message_length", -1),
                   ("grpc.max_send_message_length", -1)] + _connection.CHANNEL_OPTIONS
        tls = None
        if ca_file is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            ca, cert, key = read_tls_files(ca_file, cert_file, key_file)
            tls = dict(ca_file=ca_file, cert_file=cert_file, key_file=key_file,
                       server_name=server_name)
            credentials = grpc.ssl_channel_credentials(
                root_certificates=ca, private_key=key, certificate_chain=cert)
            if token:
                credentials = grpc.composite_channel_credentials(
                    credentials, grpc.access_token_call_credentials(token))
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._connection = _connection.ConnectionWaiter(self._channel, target, connect_timeout,
                                                        tls)
        from tally.v1 import tally_pb2, tally_pb2_grpc

        self._pb = tally_pb2
        self._stub = tally_pb2_grpc.AggregatorStub(self._channel)
        self._admin = tally_pb2_grpc.AdminStub(self._channel)
        self._lock = threading.Lock()  # _session, _feedback, _dgc, _held.
        self._join_lock = threading.Lock()  # Serializes (re-)joins.
        self._session = None
        self._feedback = None
        self._dgc = None  # DgcCompressor state after the last acknowledged push.
        self._held = None  # The last model pulled on the server's delta chain.
        self.attributes = {}  # Sent at every (re-)join; set by join(attributes=...).

    # --- lifecycle ----------------------------------------------------------

    def close(self):
        """Leaves, if joined (one attempt of at most a second, errors
        ignored: otherwise the server keeps this client_id's session until it
        expires and refuses another process's join() under the id), then
        closes the channel."""
        with self._lock:
            session = self._session
        if session is not None:
            try:
                self._stub.Leave(self._pb.LeaveRequest(
                    client_id=self.client_id, session_token=session.token),
                    timeout=min(self.call_timeout, 1.0))
            except grpc.RpcError:
                pass
        self._connection.close()
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def joined(self):
        """The JoinResult of the current session, or None."""
        with self._lock:
            return self._session.join if self._session else None

    # --- calls --------------------------------------------------------------

    def _call(self, rpc, attempt, needs_session=True, rejoin=True, deadline=None, counter=None):
        """Runs attempt(session) until it succeeds or fails for good."""
        session = self._current_session(rpc) if needs_session else None
        rejoined, failures = False, 0
        outage = _connection.OutageClock(self._connection.timeout)
        while True:
            if counter is not None:
                counter[0] += 1
            try:
                return attempt(session)
            except grpc.RpcError as e:
                code, details = e.code(), e.details()
                if self._await_connection(rpc, code, details, outage, deadline):
                    continue
                hint = _retry.retry_after(e)
                if code == grpc.StatusCode.UNAUTHENTICATED and needs_session and rejoin \
                        and not rejoined:
                    rejoined = True
                    try:
                        self._rejoin(session)
                    except AuthenticationError as joined:
                        raise SessionExpiredError(rpc, code, f"session lost ({details}) and "
                                                  f"re-join failed: {joined}") from None
                    session = self._current_session(rpc)
                    continue
                failures += 1
                delay = self._backoff.delay(code, hint, failures)
                if delay is None or failures >= self.max_attempts or (
                        deadline is not None and time.monotonic() + delay >= deadline):
                    raise self._error(rpc, code, details, hint, failures,
                                      needs_session) from None
                time.sleep(delay)

    def _await_connection(self, rpc, code, details, outage, deadline):
        """True after a failure that did not reach the server, once the
        channel is connected again (raises when it is not by the outage's
        deadline, or cannot be); False for any other failure."""
        if not self._connection.is_connection_failure(code):
            return False
        limit = outage.failed(time.monotonic())
        self._connection.wait(rpc, details, limit if deadline is None else min(limit, deadline))
        outage.connected(time.monotonic())
        return True

    def _error(self, rpc, code, details, hint, attempts, needs_session=True):
        """The named exception of a call that failed for good."""
        codes = grpc.StatusCode
        if code == codes.UNAUTHENTICATED:
            kind = SessionExpiredError if needs_session else AuthenticationError
            return kind(rpc, code, details)
        if code == codes.PERMISSION_DENIED:
            return PermissionDeniedError(rpc, code, details)
        if rpc == "Join" and code == codes.ALREADY_EXISTS:
            return ClientIdInUseError(rpc, code, details, hint)
        if rpc == "PushUpdate" and code == codes.RESOURCE_EXHAUSTED and hint is None:
            # The server's only RESOURCE_EXHAUSTED without a retry hint on
            # a push: the update exceeds limits.max_update_bytes.
            return UpdateTooLargeError(rpc, code, f"{details} (not retried)")
        if rpc == "PushUpdate" and code in _REJECTIONS:
            return RejectedUpdateError(rpc, code, details)
        if code == codes.RESOURCE_EXHAUSTED:
            note = f"gave up after {attempts} attempt(s)" + (
                f"; the server asked to retry after {hint:.3g} s" if hint is not None else "")
            return ResourceExhaustedError(rpc, code, details, hint, note)
        if code == codes.UNAVAILABLE and "failed to connect" in details:
            return ConnectionFailedError(rpc, code, details, hint,
                                         f"no connection after {attempts} attempt(s)")
        return RpcError(rpc, code, details, hint)

    def _current_session(self, rpc):
        with self._lock:
            if self._session is None:
                raise NotJoinedError(f"{rpc}: call join() first")
            return self._session

    def _rejoin(self, seen):
        with self._join_lock:
            with self._lock:
                if self._session is not seen:
                    return  # Another thread re-joined (or the client left).
            self._do_join()

    def join(self, attributes=None):
        """Opens a session (call first; again for a fresh session).
        attributes: what this client declares about itself, e.g.
        {"region": "eu", "device": "gpu"}, which a server's rounds.filter
        selects on; kept for later re-joins (docs/workflow.md#sampling)."""
        if attributes is not None:
            self.attributes = check_attributes(attributes)
        with self._join_lock:
            return self._do_join()

    def _do_join(self):
        pb = self._pb
        uploads = self.upload_codecs + (("topk",) if self.dgc is not None else ())
        with self._lock:  # A live session of ours is replaced only with its token.
            current = self._session.token if self._session else ""
        request = pb.JoinRequest(
            client_id=self.client_id, sdk_version=SDK_VERSION, session_token=current,
            supported_codecs=[1] + [codecs.CODECS[n][0] for n in dict.fromkeys(uploads)
                                    if n != "float32"],
            download_codecs=[1] + sorted({codecs.CODECS[n][0] for n in
                                          self.download_codecs + self.delta_codecs} - {1}),
            attributes=self.attributes)
        if self.local_dp is not None:
            dp = self.local_dp
            request.local_dp.CopyFrom(pb.LocalDpDeclaration(
                clip_norm=dp.clip_norm, noise_multiplier=dp.noise_multiplier, delta=dp.delta,
                epsilon=dp.epsilon()[0]))
        response = self._call("Join", lambda _: self._stub.Join(
            request, timeout=self.call_timeout), needs_session=False)
        layout = ModelLayout.from_proto(response.model_spec)
        d = layout.num_params
        upload = self._assigned(response.upload_codec, response.upload_params,
                                ("float32",) + uploads, "upload", d)
        if self.dgc is not None and upload.codec != "topk":
            raise UnsupportedError(f"Join: dgc needs topk uploads, and the server assigned "
                                   f"{upload.codec} (its compression.upload must list topk)")
        download = self._assigned(response.download_codec, response.download_params,
                                  ("float32",) + self.download_codecs, "download", d)
        delta = None
        if response.delta_codec:
            delta = self._assigned(response.delta_codec, response.delta_params,
                                   self.delta_codecs, "delta", d)
        limits = response.limits
        chunk = min(self.chunk_bytes, limits.max_chunk_bytes or self.chunk_bytes)
        chunk -= chunk % 4
        if chunk == 0:
            raise TallyError(f"chunk size too small: chunk_bytes={self.chunk_bytes}, server "
                             f"max_chunk_bytes={limits.max_chunk_bytes}")
        result = JoinResult(layout, response.model_version, upload, download, delta,
                            limits.max_chunk_bytes, limits.max_update_bytes,
                            limits.heartbeat_interval_ms / 1000.0)
        with self._lock:
            self._session = _Session(response.session_token, result, chunk)
            if self._held is not None and self._held.layout != layout:
                self._held = None
        return result

    @staticmethod
    def _assigned(codec_id, params, offered, what, d):
        """The codec the server assigned, which must be one offered."""
        spec = _wire.spec_from_proto(codec_id, params)
        if spec.codec not in offered:
            raise UnsupportedError(f"Join: the server assigned {what} codec {spec.codec}, which "
                                   "this client did not offer")
        try:
            codecs.validate_spec(spec, d)
        except CodecError as e:
            raise UnsupportedError(f"Join: the assigned {what} codec is unusable: {e}") from None
        return spec

    def get_task(self, wait=0.0):
        """What to do next; long-polls up to `wait` seconds when nothing."""
        wait = max(0.0, float(wait))

        def attempt(session):
            request = self._pb.GetTaskRequest(client_id=self.client_id,
                                              session_token=session.token,
                                              wait_ms=int(wait * 1000))
            return self._stub.GetTask(request, timeout=wait + self.call_timeout)

        t = self._call("GetTask", attempt)
        kind = {1: "train", 3: "done", 4: "evaluate"}.get(t.kind, "wait")
        return Task(kind, t.round, t.model_version, t.local_steps,
                    t.deadline_unix_ms / 1000.0 if t.deadline_unix_ms else None,
                    t.retry_after_ms / 1000.0, task_config(t.config),
                    t.evaluation.evaluation_id)

    def tasks(self, wait=30.0, stop=None):
        """Yields every TRAIN and EVALUATE task until the federation is done
        (or `stop`, a threading.Event, is set), asking again while the server
        says WAIT. tally.run() serves them with your fit / evaluate."""
        while stop is None or not stop.is_set():
            task = self.get_task(wait=wait)
            if task.kind == "done":
                return
            if task.kind in ("train", "evaluate"):
                yield task

    def train_tasks(self, wait=30.0, stop=None):
        """Yields every TRAIN task, as tasks(); an EVALUATE task (a server
        with federated evaluation on) raises TallyError: use tasks() or
        tally.run() to serve both."""
        for task in self.tasks(wait=wait, stop=stop):
            if task.kind == "evaluate":
                raise TallyError("the server sent an EVALUATE task (its evaluation section is "
                                 "on): iterate over tasks() or use tally.run(client, fit, "
                                 "evaluate)")
            yield task

    def report_evaluation(self, task, num_examples, metrics):
        """The result of an EVALUATE task: `metrics` (name -> finite
        number; names 1..64 printable ASCII characters) measured on
        `num_examples` > 0 local examples, their weight in the server's mean.
        Checked before anything is sent (TallyError). Returns the number of
        reports the server has taken for this evaluation so far."""
        if task.kind != "evaluate":
            raise TallyError(f"report_evaluation: a {task.kind} task is not an EVALUATE task")
        if int(num_examples) < 1:
            raise TallyError("report_evaluation: num_examples must be > 0")
        metrics = check_metrics(metrics, "report_evaluation")

        def attempt(session):
            request = self._pb.EvaluationReport(
                client_id=self.client_id, session_token=session.token,
                evaluation_id=task.evaluation_id, model_version=task.model_version,
                num_examples=int(num_examples), metrics=metrics)
            return self._stub.ReportEvaluation(request, timeout=self.call_timeout)

        return self._call("ReportEvaluation", attempt).reports_received

    # --- models -------------------------------------------------------------

    def pull_model(self, version=0):
        """The global model at `version` (0 = latest) as a Model whose params
        is a float32 numpy array. Checks layout hash and lengths; decodes
        compressed models and applies deltas from the model this client
        holds (have_version) when the server sends them."""
        return self._call("PullModel", lambda session: self._pull_once(session, version))

    def _pull_once(self, session, version):
        join = session.join
        deltas = join.delta_codec is not None
        with self._lock:
            held = self._held if deltas else None
        request = self._pb.PullModelRequest(
            client_id=self.client_id, session_token=session.token, version=version,
            codec=join.download_codec.id, have_version=held.version if held else 0,
            have_chain=held.chain_id if held else 0,
            delta_codec=join.delta_codec.id if deltas else 0)
        assembler = _wire.ModelAssembler(join.layout, join.download_codec.codec, held)
        stream = self._stub.PullModel(request, timeout=self.transfer_timeout)
        try:
            for chunk in stream:
                assembler.add(chunk)
            params = assembler.complete()
        except TallyError:
            stream.cancel()
            if deltas:
                with self._lock:  # What we hold may be what went wrong.
                    self._held = None
            raise
        if deltas:
            with self._lock:
                if assembler.delta_base:
                    self._held = _wire.HeldModel(assembler.version, params.copy(),
                                                 join.layout, assembler.chain_id)
                else:
                    self._held = None
        return Model(assembler.version, assembler.round, params, join.layout,
                     assembler.payload_bytes, assembler.segments, assembler.delta_segments)

    def watch(self, after_version=0, timeout=None):
        """Yields (version, round) for every new model version > after_version
        until `timeout` seconds pass (then returns) or the caller stops
        iterating. A dropped stream is reopened after the last version seen
        (retried like every call; a lost session is re-joined once)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        after, failures, rejoined = after_version, 0, False
        outage = _connection.OutageClock(self._connection.timeout)
        while True:
            session = self._current_session("WatchModel")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            stream = self._stub.WatchModel(self._pb.WatchModelRequest(
                client_id=self.client_id, session_token=session.token, after_version=after),
                timeout=remaining)
            try:
                for notice in stream:
                    if notice.version > after:
                        after, failures = notice.version, 0
                        yield notice.version, notice.round
                return  # The server ended the stream.
            except grpc.RpcError as e:
                code = e.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    return  # Reaching `timeout` is the normal end of a watch.
                if self._await_connection("WatchModel", code, e.details(), outage, deadline):
                    continue
                if code == grpc.StatusCode.UNAUTHENTICATED and not rejoined:
                    rejoined = True
                    self._rejoin(session)
                    continue
                failures += 1
                hint = _retry.retry_after(e)
                delay = self._backoff.delay(code, hint, failures)
                if delay is None or failures >= self.max_attempts:
                    raise self._error("WatchModel", code, e.details(), hint, failures) from None
                time.sleep(delay)
            finally:
                stream.cancel()

    def wait_for_version(self, after_version, timeout):
        """Blocks until a version > after_version is published; returns it.
        TimeoutError after `timeout` seconds."""
        for version, _ in self.watch(after_version, timeout):
            return version
        raise TimeoutError(f"no model version > {after_version} within {timeout} s")

    # --- updates ------------------------------------------------------------

    def _update_id(self):
        if self._ids is not None:
            return f"{self._ids.getrandbits(128):032x}"
        return uuid.uuid4().hex

    def push_update(self, *ambiguous, delta=None, weights=None, base=None, round=0,
                    base_version=0, num_samples=1, local_steps=0, metrics=None,
                    update_id=None):
        """Uploads one update, named for what it is: delta= the local model
        minus the model it was trained from, or weights= the local model
        with base= that model (the SDK sends weights - base). Each a flat
        array of num_params floats or a dict name -> tensor / array (a
        PyTorch state_dict); base may also be the pulled tally.Model. An
        unnamed update, or weights without base, raises TallyError: weights
        pushed as a delta would add the whole model to the global model.
        num_samples (> 0) weights it. Returns a PushResult; raises
        RejectedUpdateError when the server refuses the update, and its
        subclass UpdateTooLargeError at once, without sending, when the
        encoded update exceeds the max_update_bytes Join reported."""
        session = self._current_session("PushUpdate")
        layout = session.join.layout
        delta = _update_delta(layout, ambiguous, delta, weights, base)
        if self.local_dp is not None:  # Once, before encoding: retries resend it.
            delta, _ = apply_local_dp(delta, self.local_dp)
        if num_samples < 1:
            raise TallyError("push_update: num_samples must be > 0")
        if update_id is None:
            update_id = self._update_id()
        elif not 1 <= len(update_id) <= 128 or not all(0x21 <= ord(c) <= 0x7E for c in update_id):
            raise TallyError("push_update: update_id must be 1..128 printable ASCII characters")
        # Encoded once, before any attempt: retries resend the same bytes.
        spec = session.join.upload_codec
        feedback = dgc = None
        if self.dgc is not None:
            with self._lock:
                current = self._dgc
            dgc = current.copy() if current is not None and current.dim == delta.size else \
                DgcCompressor.from_layout(layout, self.dgc)
            payload, spec = dgc.compress(delta)
        elif spec.codec == "float32" and not spec.zstd:  # Raw float32: no encoding.
            payload = delta.tobytes()
        else:
            seed = int.from_bytes(hashlib.blake2b(f"{self.client_id}/{update_id}".encode(),
                                                  digest_size=8).digest(), "little")
            spec = spec.replace(seed=seed)
            if self.error_feedback and error_feedback_suits(spec):
                with self._lock:
                    current = self._feedback
                feedback = current.copy() if current is not None and current.dim == delta.size \
                    else ErrorFeedback(delta.size)
                payload = feedback.compress(spec, delta)
            else:
                payload = codecs.encode(spec, delta)
        limit = session.join.max_update_bytes
        if limit and len(payload) > limit:
            raise UpdateTooLargeError(
                "PushUpdate", grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the {spec.codec} update is {len(payload)} bytes, over the server's "
                f"limits.max_update_bytes = {limit}; not sent (raise the limit in the server's "
                "config, or compress more)", len(payload), limit)
        header = dict(update_id=update_id, base_version=base_version, round=round,
                      num_samples=int(num_samples), local_steps=int(local_steps),
                      codec=spec.id, layout_hash=layout.layout_hash,
                      num_params=layout.num_params, payload_bytes=len(payload),
                      metrics={k: float(v) for k, v in (metrics or {}).items()})
        result = PushResult(update_id, payload_bytes=len(payload))
        counter = [0]
        try:
            response = self._call("PushUpdate", lambda s: self._push_once(s, header, spec, payload),
                                  counter=counter)
        except RpcError as e:
            if e.code != grpc.StatusCode.ALREADY_EXISTS:
                raise
            result.duplicate = True
            response = None
        result.attempts = counter[0]
        with self._lock:  # Acknowledged: the state after this update is ours.
            if feedback is not None:
                self._feedback = feedback
            if dgc is not None:
                self._dgc = dgc
        if response is not None:
            result.round, result.model_version = response.round, response.model_version
        return result

    def _push_once(self, session, header, spec, payload):
        pb = self._pb
        message = pb.UpdateHeader(client_id=self.client_id, session_token=session.token, **header)
        if spec.codec != "float32" or spec.zstd:
            _wire.spec_to_proto(spec, message.codec_params)
        chunk = session.chunk_bytes
        view = memoryview(payload)

        def messages():
            yield pb.UpdateChunk(header=message)
            for offset in range(0, len(payload), chunk):
                yield pb.UpdateChunk(data=bytes(view[offset:offset + chunk]), offset=offset)

        return self._stub.PushUpdate(messages(), timeout=self.transfer_timeout)

    # --- session ------------------------------------------------------------

    def heartbeat(self):
        """Keeps the session alive; returns (model_version, round)."""
        def attempt(session):
            return self._stub.Heartbeat(self._pb.HeartbeatRequest(
                client_id=self.client_id, session_token=session.token), timeout=self.call_timeout)

        response = self._call("Heartbeat", attempt)
        return response.model_version, response.round

    def leave(self):
        """Ends the session (a session the server already forgot is gone too)."""
        token = [None]

        def attempt(session):
            token[0] = session.token
            return self._stub.Leave(self._pb.LeaveRequest(
                client_id=self.client_id, session_token=session.token), timeout=self.call_timeout)

        try:
            self._call("Leave", attempt, rejoin=False)
        except SessionExpiredError:
            pass
        with self._lock:
            if self._session is not None and self._session.token == token[0]:
                self._session = None

    def server_status(self):
        """Admin.GetStatus: a tally.v1.ServerStatus message."""
        return self._call("GetStatus", lambda _: self._admin.GetStatus(
            self._pb.GetStatusRequest(), timeout=self.call_timeout), needs_session=False)

    def history(self, after_round=0, max_records=0):
        """Admin.GetHistory: the run's records (those of rounds after
        `after_round`, the newest `max_records` if > 0) as dicts with the
        fields of the history file (docs/workflow.md#history)."""
        from tally.history import record_from_proto

        response = self._call("GetHistory", lambda _: self._admin.GetHistory(
            self._pb.GetHistoryRequest(after_round=after_round, max_records=max_records),
            timeout=self.call_timeout), needs_session=False)
        return [record_from_proto(r) for r in response.records]
