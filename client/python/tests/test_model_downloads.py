"""Compressed model downloads and deltas between versions (PullModel
segments, tally.proto's ModelHeader rule) against a real tally-server: a
client following the delta chain holds bit for bit the model a fresh client
of the same codecs pulls in full, close to the exact float32 model; the
default codecs follow the server's configuration, download_codecs=["float32"]
gets the exact model."""
import numpy as np

from conftest import build_binary
from tally.client import Client
from tally.testing import ServerProcess

CONFIG = ('model { tensors { name: "w" shape: 1000 } } rounds { clients_per_round: 1 } '
          'compression { download { codec: "float16" } '
          'download_delta { codec: "topk" params { k: 10 } } }')


def test_delta_chain_matches_full_downloads():
    with ServerProcess(build_binary("tally-server"), CONFIG) as server:
        follower = Client(server.target, "follower", download_codecs=["float16"],
                          delta_codecs=["topk"], seed=1)
        joined = follower.join()
        assert joined.download_codec.codec == "float16"
        assert joined.delta_codec is not None and joined.delta_codec.codec == "topk"
        g = np.random.default_rng(7)
        models = []
        for _ in range(4):
            task = follower.get_task(wait=10)
            model = follower.pull_model()
            models.append(model)
            follower.push_update(delta=g.standard_normal(1000).astype(np.float32), round=task.round,
                                 base_version=model.version)
            follower.wait_for_version(model.version, timeout=10)
        last = follower.pull_model()
        assert all(m.delta_segments == 1 for m in models[1:] + [last]), models
        assert last.payload_bytes < 2 * 1000 // 10
        fresh = Client(server.target, "fresh", download_codecs=["float16"],
                       delta_codecs=["topk"], seed=2)
        fresh.join()
        full = fresh.pull_model()
        exact_client = Client(server.target, "exact", download_codecs=["float32"], seed=3)
        assert exact_client.join().delta_codec is None
        exact = exact_client.pull_model()
        assert full.version == last.version == exact.version and full.delta_segments == 0
        np.testing.assert_array_equal(last.params.view(np.uint32), full.params.view(np.uint32))
        np.testing.assert_array_equal(last.params,
                                      last.params.astype(np.float16).astype(np.float32))
        # The deltas carry the exact model's largest changes: the chain moved towards it.
        assert np.linalg.norm(exact.params - last.params) < \
            np.linalg.norm(exact.params - models[0].params)
        # The defaults take what the server configures (like the C++ SDK's).
        default = Client(server.target, "default", seed=4)
        joined = default.join()
        assert joined.download_codec.codec == "float16" and joined.delta_codec.codec == "topk"
        for c in (follower, fresh, exact_client, default):
            c.close()
