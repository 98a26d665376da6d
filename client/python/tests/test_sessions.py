"""Sessions against real tally-server processes: a second process joining
under the client_id of a live session is refused (ClientIdInUseError) while
the holder keeps working and may re-join; close() leaves, which frees the
id; a session that expired is re-joined transparently. Waits poll the
server's status for the state they need."""
import grpc
import pytest

from conftest import build_binary, wait_until
from tally.client import Client
from tally.errors import ClientIdInUseError
from tally.testing import ServerProcess

MODEL = 'model { tensors { name: "w" shape: 4 } }'


def test_a_live_client_id_is_refused_until_its_holder_closes():
    config = MODEL + " rounds { clients_per_round: 1 }"
    with ServerProcess(build_binary("tally-server"), config) as server:
        holder = Client(server.target, "worker", seed=1)
        holder.join()
        twin = Client(server.target, "worker", seed=2, max_attempts=1)
        with pytest.raises(ClientIdInUseError, match="already has a live session") as refused:
            twin.join()
        assert refused.value.code == grpc.StatusCode.ALREADY_EXISTS
        assert 0 < refused.value.retry_after <= 300  # Until the session would expire.
        holder.heartbeat()  # Not taken over.
        first = holder.joined
        assert holder.join() is not first  # Its own session: a re-join with its token.
        holder.heartbeat()
        holder.close()  # Leaves.
        twin.join()
        assert twin.get_task(wait=10).kind == "train"
        twin.close()


def test_an_expired_session_is_rejoined_transparently():
    config = MODEL + " rounds { clients_per_round: 1 } limits { session_timeout_ms: 300 }"
    with ServerProcess(build_binary("tally-server"), config) as server:
        client = Client(server.target, "sleeper", seed=1)
        observer = Client(server.target, "observer", seed=2)
        joined = client.join()
        wait_until(lambda: observer.server_status().connected_clients == 0)
        task = client.get_task(wait=10)  # UNAUTHENTICATED, re-join, TRAIN.
        assert task.kind == "train" and client.joined is not joined
        assert observer.server_status().connected_clients == 1
        client.close()
        observer.close()
