"""Connecting against real tally-server processes: a client started before
its server joins once the server is up (the wait is not counted in
max_attempts); with no server it gives up after connect_timeout saying that
nothing listens there. TLS set-ups that do not fit: test_tls.py."""
import threading
import time

import pytest

from conftest import build_binary
from tally.client import Client
from tally.errors import ConnectionFailedError, TallyError
from tally.testing import ServerProcess

CONFIG = 'model { tensors { name: "w" shape: 4 } } rounds { clients_per_round: 1 }'


def stopped_server_port():
    """A port where a server was and no longer is: connections are refused."""
    with ServerProcess(build_binary("tally-server"), CONFIG) as s:
        return s.port


def test_waits_for_a_server_that_is_not_up_yet():
    port = stopped_server_port()
    client = Client(f"127.0.0.1:{port}", "early", max_attempts=1, seed=1)
    result = {}

    def join():
        try:
            result["joined"] = client.join()
        except TallyError as e:
            result["error"] = e

    joining = threading.Thread(target=join)
    joining.start()
    time.sleep(1.5)  # The server starts late: the scenario itself.
    with ServerProcess(build_binary("tally-server"), CONFIG, port=port):
        joining.join(timeout=60)
        assert "error" not in result, result.get("error")
        assert result["joined"].layout.num_params == 4
    client.close()


def test_gives_up_after_connect_timeout_saying_nothing_listens():
    port = stopped_server_port()
    client = Client(f"127.0.0.1:{port}", "early", connect_timeout=1.0, seed=1)
    start = time.monotonic()
    with pytest.raises(ConnectionFailedError) as failed:
        client.join()
    waited = time.monotonic() - start
    message = str(failed.value)
    assert f"no connection to 127.0.0.1:{port}" in message
    assert "connect_timeout = 1 s" in message
    assert "nothing accepts connections there (Connection refused)" in message
    assert 1.0 <= waited < 30.0
    client.close()
    with pytest.raises(TallyError, match="positive timeouts"):
        Client("127.0.0.1:1", "a", connect_timeout=0)
