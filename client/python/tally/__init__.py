"""tally Python SDK: join a tally federation from numpy or PyTorch.

    import tally
    client = tally.Client("localhost:50051", client_id="worker-1")
    joined = client.join()
    ...

See client/python/README.md and docs/sdk-python.md.
"""
import os as _os

# Generated gRPC stubs are the subpackage tally.v1: inside an installed
# package, or (source checkout) in the directory TALLY_PY_GEN names, which
# gen_protos.py --out filled.
for _gen in filter(None, _os.environ.get("TALLY_PY_GEN", "").split(_os.pathsep)):
    _extra = _os.path.join(_gen, "tally")
    if _extra not in __path__:
        __path__.append(_extra)

__version__ = "0.1.0"

from tally.errors import (AuthenticationError, ClientIdInUseError, CodecError,  # noqa: E402
                          ConnectionFailedError, LayoutMismatchError, LengthMismatchError, NotJoinedError,
                          PermissionDeniedError, ProtocolError, RejectedUpdateError,
                          ResourceExhaustedError, RpcError, SessionExpiredError, TallyError,
                          TlsError, UnsupportedError, UpdateTooLargeError)
from tally.codecs import CodecSpec, decode, encode  # noqa: E402
from tally.dgc import DgcCompressor, DgcSettings  # noqa: E402
from tally.error_feedback import ErrorFeedback  # noqa: E402
from tally.layout import ModelLayout, TensorInfo  # noqa: E402
from tally.privacy import LocalDp  # noqa: E402
from tally.model_file import read_model_file, write_model_file  # noqa: E402
from tally.client import Client, JoinResult, Model, PushResult, Task  # noqa: E402
from tally.history import history_series, plot_history, read_history  # noqa: E402
from tally.workflow import run  # noqa: E402
