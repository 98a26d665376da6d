"""The exceptions of the tally Python SDK.

Every error the SDK understands is a TallyError subclass named for what went
wrong; a gRPC failure it does not interpret is a RpcError carrying the gRPC
status code and message (never a raw grpc.RpcError).
"""


class TallyError(Exception):
    """Base class of every error raised by the SDK."""


class CodecError(TallyError, ValueError):
    """A payload a codec refuses (malformed, truncated, out of range), a value
    the codec cannot encode (non-finite, float16 overflow), or an invalid
    codec spec. Mirrors the INVALID_ARGUMENT of compress/codec.h."""


class ProtocolError(TallyError):
    """The server sent something this SDK cannot accept: a stream out of order,
    chunks at the wrong offset, an invalid model spec."""


class LayoutMismatchError(ProtocolError):
    """The model's layout (tensor names / shapes, layout hash) differs from
    the one Join returned, or from the state_dict / array given."""


class LengthMismatchError(ProtocolError):
    """A length the server announced disagrees with the data (payload bytes,
    num_params), or an array has the wrong number of entries."""


class UnsupportedError(TallyError):
    """The server asked for something this SDK does not implement (an unknown
    codec, a non-float32 dtype)."""


class RpcError(TallyError):
    """A gRPC call failed for good (after the SDK's retries).

    Attributes: code (grpc.StatusCode), details (the server's message), rpc
    (the method), retry_after (seconds the server hinted, or None)."""

    def __init__(self, rpc, code, details, retry_after=None, note=None):
        message = f"{rpc}: {code.name if code is not None else 'UNKNOWN'}: {details}"
        super().__init__(f"{message} ({note})" if note else message)
        self.rpc = rpc
        self.code = code
        self.details = details
        self.retry_after = retry_after


class NotJoinedError(TallyError):
    """A call that needs a session was made before join() (or after leave())."""


class AuthenticationError(RpcError):
    """UNAUTHENTICATED: the server does not know who is calling: no client
    certificate and no bearer token, or a token it does not know."""


class SessionExpiredError(AuthenticationError):
    """UNAUTHENTICATED: the server no longer knows the session and joining
    again failed too (or re-joining is off)."""


class ClientIdInUseError(RpcError):
    """ALREADY_EXISTS from join(): another process holds a live session under
    this client_id (or this process restarted without leave()). Give each
    process its own client_id, or wait retry_after seconds for the old
    session to expire (the server's limits.session_timeout_ms)."""


class PermissionDeniedError(RpcError):
    """PERMISSION_DENIED: the identity of this client's certificate or token
    is not its client_id, or Admin calls without an admin identity."""


class ConnectionFailedError(RpcError):
    """UNAVAILABLE without reaching the server: no connection within the
    Client's connect_timeout (not running, unreachable, a wrong target)."""


class TlsError(ConnectionFailedError):
    """The TLS set-ups of this client and the server do not fit, found at
    once (without waiting for connect_timeout), the message says which and
    what to change: one side speaks TLS and the other plaintext (ca_file);
    this client refused the server's certificate (ca_file, server_name);
    the server requires or refused this client's certificate (cert_file,
    key_file)."""


class ResourceExhaustedError(RpcError):
    """RESOURCE_EXHAUSTED still after max_attempts: the server is rate
    limiting this client or overloaded; retry_after is the delay it asked
    for (None: it gave none)."""


class RejectedUpdateError(RpcError):
    """The server refused an update: INVALID_ARGUMENT (malformed), ABORTED
    (stale round / version), FAILED_PRECONDITION (not selected, finished)."""


class UpdateTooLargeError(RejectedUpdateError, ResourceExhaustedError):
    """An update's payload exceeds the server's limits.max_update_bytes
    (code RESOURCE_EXHAUSTED, never retried): refused by this SDK before
    sending when Join reported the limit, or by the server. payload_bytes
    and max_update_bytes say by how much (None when the server refused
    and did not say). Raise the server's limits.max_update_bytes, or
    compress more (a smaller topk / DGC ratio, half_values)."""

    def __init__(self, rpc, code, details, payload_bytes=None, max_update_bytes=None):
        super().__init__(rpc, code, details)
        self.payload_bytes = payload_bytes
        self.max_update_bytes = max_update_bytes
