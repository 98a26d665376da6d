"""Retries against real tally-server processes: RESOURCE_EXHAUSTED is
retried after the delay the server hints and succeeds, or surfaces as
ResourceExhaustedError with that hint once max_attempts are spent; a
session the server lost (it restarted) is re-joined transparently. Each
situation is set up by the test, not by timing: waits poll the server's
status for the state they need."""
import threading

import grpc
import numpy as np
import pytest

from conftest import build_binary, wait_until
from tally.client import Client
from tally.errors import ResourceExhaustedError
from tally.testing import ServerProcess

MODEL = 'model { tensors { name: "w" shape: 4 } }'


class HeldUpload:
    """A raw PushUpdate of client `client_id` that sends its header and
    then waits for release() before its payload: an upload in flight."""

    def __init__(self, target, client_id):
        from tally.v1 import tally_pb2 as pb, tally_pb2_grpc

        self.channel = grpc.insecure_channel(target)
        stub = tally_pb2_grpc.AggregatorStub(self.channel)
        joined = stub.Join(pb.JoinRequest(client_id=client_id))
        token = joined.session_token
        task = stub.GetTask(pb.GetTaskRequest(client_id=client_id, session_token=token,
                                              wait_ms=10000))
        header = pb.UpdateHeader(
            client_id=client_id, session_token=token, update_id="held", round=task.round,
            base_version=task.model_version, num_samples=1, codec=1,
            layout_hash=joined.model_spec.layout_hash, num_params=4, payload_bytes=16)
        self._release = threading.Event()

        def messages():
            yield pb.UpdateChunk(header=header)
            self._release.wait(30)
            yield pb.UpdateChunk(data=np.ones(4, np.float32).tobytes(), offset=0)

        self.response = None
        self._thread = threading.Thread(target=lambda: setattr(
            self, "response", stub.PushUpdate(messages(), timeout=60)))
        self._thread.start()

    def release(self):
        self._release.set()

    def finish(self):
        self.release()
        self._thread.join(30)
        self.channel.close()
        return self.response


def test_resource_exhausted_is_retried_after_the_hint():
    """limits.max_concurrent_uploads 1 and another client's upload in
    flight: the push is refused with RESOURCE_EXHAUSTED and a 1 s hint; the
    held upload is released once the server counted that refusal, and the
    SDK's retry after the hint is accepted."""
    config = MODEL + " rounds { clients_per_round: 2 } limits { max_concurrent_uploads: 1 }"
    with ServerProcess(build_binary("tally-server"), config) as server:
        held = HeldUpload(server.target, "holder")
        client = Client(server.target, "pusher", seed=1)
        try:
            client.join()
            task = client.get_task(wait=10)
            model = client.pull_model()
            wait_until(lambda: client.server_status().uploads_in_flight == 1)
            releaser = threading.Thread(target=lambda: (
                wait_until(lambda: client.server_status().updates_rejected == 1),
                held.release()))
            releaser.start()
            pushed = client.push_update(delta=np.full(4, 3, np.float32), round=task.round,
                                        base_version=model.version)
            releaser.join()
        finally:
            held.release()
        assert pushed.attempts == 2 and not pushed.duplicate
        assert held.finish().accepted_in_round >= 1
        client.wait_for_version(model.version, timeout=10)
        # Hand computation: the round's mean of ones and threes.
        np.testing.assert_array_equal(client.pull_model().params, np.full(4, 2, np.float32))
        client.close()


def test_rate_limit_surfaces_with_the_hint_after_max_attempts():
    """limits.client_uploads_per_minute 1: the second upload within the
    minute is refused with the time until the next token (up to 60 s);
    with max_attempts 1 the SDK raises it instead of waiting."""
    config = MODEL + " rounds { clients_per_round: 1 } limits { client_uploads_per_minute: 1 }"
    with ServerProcess(build_binary("tally-server"), config) as server:
        client = Client(server.target, "limited", seed=1, max_attempts=1)
        client.join()

        def train_and_push():
            task = client.get_task(wait=10)
            model = client.pull_model()
            client.push_update(delta=np.ones(4, np.float32), round=task.round,
                               base_version=model.version)
            return model.version

        client.wait_for_version(train_and_push(), timeout=10)  # The minute's one token.
        with pytest.raises(ResourceExhaustedError, match="client_uploads_per_minute") as refused:
            train_and_push()
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert 0 < refused.value.retry_after <= 60
        assert "gave up after 1 attempt" in str(refused.value)
        client.close()


def test_session_lost_in_a_server_restart_is_rejoined():
    """The server restarts on the same port (sessions are never saved): the
    next call gets UNAUTHENTICATED, the SDK joins again by itself and the
    round goes on with the new session."""
    config = MODEL + " rounds { clients_per_round: 1 }"
    binary = build_binary("tally-server")
    first = ServerProcess(binary, config, extra_args=("--shutdown_grace_ms=100",))
    try:
        client = Client(first.target, "restarted", seed=1)
        joined = client.join()
        task = client.get_task(wait=10)
        client.push_update(delta=np.ones(4, np.float32), round=task.round,
                           base_version=client.pull_model().version)
        assert first.stop() == 0
        with ServerProcess(binary, config, port=first.port) as second:
            task = client.get_task(wait=10)  # UNAUTHENTICATED, re-join, TRAIN.
            assert task.kind == "train" and client.joined is not joined
            model = client.pull_model()
            pushed = client.push_update(delta=np.full(4, 2, np.float32), round=task.round,
                                        base_version=model.version)
            assert not pushed.duplicate
            client.wait_for_version(model.version, timeout=10)
            # The new server started from zeros: only the second update.
            np.testing.assert_array_equal(client.pull_model().params,
                                          np.full(4, 2, np.float32))
            assert second.port == first.port
            client.close()
    finally:
        first.close()
