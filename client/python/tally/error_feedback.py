"""Client-side error feedback (compress/error_feedback.h; EF / EF-SGD):
what a lossy codec drops from one update is added to the next.

Per update x with the residual e (zero at first and after reset()):
    p = x + e;  payload = encode(spec, p);  e = p - decode(spec, payload)
all in float32, entry by entry, so e is exactly what the server does not see
and the residuals equal the C++ SDK's bit for bit. A lossless codec leaves
e = 0. Not thread-safe (one client's state).
"""
import numpy as np

from tally import codecs
from tally.errors import CodecError


def suits(spec):
    """compress::ErrorFeedbackSuits: the contractive lossy codecs error
    feedback is for. Not qsgd or rescaled randk (unbiased; their error can
    exceed the update and the residual would grow), not float32 or spsa."""
    if spec.codec == "randk":
        return not spec.rescale
    return spec.codec in ("float16", "bfloat16", "int8", "sign", "topk")


class ErrorFeedback:
    def __init__(self, d, enabled=True):
        self.enabled = enabled
        self.residual = np.zeros(d, dtype=np.float32)

    @property
    def dim(self):
        return self.residual.size

    def copy(self):
        other = ErrorFeedback(self.dim, self.enabled)
        other.residual = self.residual.copy()
        return other

    def compress(self, spec, x):
        """The payload of x + e; updates e (unchanged if encoding fails)."""
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        if x.size != self.dim:
            raise CodecError(f"error feedback: the update has {x.size} entries, the residual "
                             f"{self.dim}")
        if not self.enabled:
            return codecs.encode(spec, x)
        p = x + self.residual
        payload = codecs.encode(spec, p)
        if spec.lossless:
            self.residual = np.zeros_like(self.residual)
        else:
            self.residual = p - codecs.decode(spec, payload, p.size)
        return payload

    def reset(self):
        self.residual = np.zeros_like(self.residual)
