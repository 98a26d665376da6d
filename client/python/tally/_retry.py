"""Retry policy (client/retry.cc): UNAVAILABLE and DEADLINE_EXCEEDED are
retried after full jitter under an exponential ceiling; RESOURCE_EXHAUSTED
after the delay the server hints in a google.rpc.RetryInfo (wire-compatible
tally.v1.RpcStatus in the grpc-status-details-bin trailer)."""
import random

import grpc

RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
RETRY_INFO_TYPE_URL = "type.googleapis.com/google.rpc.RetryInfo"


def backoff_ceiling(initial, maximum, multiplier, retry):
    """initial * multiplier^retry seconds, capped at maximum (retry >= 0)."""
    if initial <= 0:
        return 0.0
    try:
        seconds = initial * max(multiplier, 1.0) ** max(retry, 0)
    except OverflowError:
        return max(maximum, 0.0)
    return min(seconds, max(maximum, 0.0))


def retry_after(error):
    """The server's retry hint (seconds) of a grpc.RpcError, or None."""
    from tally.v1 import tally_pb2

    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailers or ():
        if key != "grpc-status-details-bin":
            continue
        try:
            status = tally_pb2.RpcStatus.FromString(value)
            for detail in status.details:
                if detail.type_url == RETRY_INFO_TYPE_URL:
                    info = tally_pb2.RetryInfo.FromString(detail.value)
                    return info.retry_delay.seconds + info.retry_delay.nanos * 1e-9
        except Exception:  # A malformed trailer is no hint.  # noqa: BLE001
            return None
    return None


class Backoff:
    """The retry delays of one client; seeded for reproducible tests."""

    def __init__(self, initial=0.1, maximum=5.0, multiplier=2.0, seed=None):
        self.initial, self.maximum, self.multiplier = initial, maximum, multiplier
        self.random = random.Random(seed)

    def delay(self, code, hint, failures):
        """Seconds to wait after the `failures`-th failure with `code`, or
        None if it is not retried."""
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return hint
        if code not in RETRYABLE:
            return None
        ceiling = backoff_ceiling(self.initial, self.maximum, self.multiplier, failures - 1)
        return self.random.uniform(0.0, min(ceiling, 3600.0))
