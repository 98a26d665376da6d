"""What a call does when it cannot reach the server (client/connection.cc,
client/connect_probe.cc): waits for the channel to connect (a server not up
yet, or restarting) for up to connect_timeout, and fails at once, saying
what to change, when a probe shows the connection can never work: TLS on
one side only, a server certificate this client refuses, a client
certificate the server refuses. The probe is one TCP connection and a TLS
handshake with Python's ssl, told apart by what the server answered."""
import socket
import ssl
import time

import grpc

from tally.errors import ConnectionFailedError, TlsError

# How often a waiting call probes again, and the most gRPC waits between
# two connection attempts (the channel option below).
RETRY_INTERVAL = 2.0
CHANNEL_OPTIONS = [("grpc.max_reconnect_backoff_ms", int(RETRY_INTERVAL * 1000))]
_PROBE_TIMEOUT = 3.0
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE

# What a probe saw (client/connect_probe.h's ProbeResult::Kind).
NOT_PROBED, UNREACHABLE, CLOSED, PLAINTEXT_SERVER, TLS_SERVER, SERVER_CERT_REFUSED, \
    CLIENT_CERT_REFUSED = range(7)


def host_port(target):
    """(host, port) of "host:port", "[v6]:port", "dns:///host:port",
    "ipv4:a.b.c.d:port"; None for other forms (unix:, several addresses)."""
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme):]
            break
    if not target or "," in target or "/" in target or target.startswith(
            ("unix:", "unix-abstract:", "vsock:", "xds:")):
        return None
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "443"
    elif target.count(":") == 1:
        host, port = target.split(":")
    elif ":" in target:
        return None  # A bare IPv6 address.
    else:
        host, port = target, "443"
    return (host, port) if host and port.isdigit() else None


def _reason(error):
    return (getattr(error, "reason", None) or str(error)).lower().replace("_", " ")


def _handshake(sock, tls, name):
    """What the server answers to this client's TLS handshake over `sock`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_alpn_protocols(["h2"])
    if tls is None:  # A plaintext client only asks "is it TLS?".
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    else:
        context.load_verify_locations(tls["ca_file"])
        if tls.get("cert_file"):
            context.load_cert_chain(tls["cert_file"], tls["key_file"])
    try:
        wrapped = context.wrap_socket(sock, server_hostname=name)
    except ssl.SSLCertVerificationError as e:
        return SERVER_CERT_REFUSED, e.verify_message
    except ssl.SSLError as e:
        if "ALERT" in str(e.reason):  # TLS, refusing this handshake.
            return (TLS_SERVER if tls is None else CLIENT_CERT_REFUSED), _reason(e)
        if isinstance(e, ssl.SSLEOFError) or "EOF" in str(e.reason):
            return CLOSED, _reason(e)
        return PLAINTEXT_SERVER, _reason(e)  # Bytes that are no TLS record.
    except OSError as e:
        return CLOSED, _reason(e)
    with wrapped:
        if tls is None:
            return TLS_SERVER, ""
        try:  # A server that took the certificate sends its HTTP/2 settings.
            if wrapped.recv(1):
                return TLS_SERVER, ""
        except socket.timeout:
            return TLS_SERVER, ""
        except OSError as e:
            return CLIENT_CERT_REFUSED, _reason(e)
        return CLIENT_CERT_REFUSED, "it closed the connection after the handshake"


def probe(target, tls, timeout):
    """(kind, detail): connects to `target` and shakes hands as `tls` (None:
    plaintext; else a dict of ca_file, cert_file, key_file, server_name)
    says, within `timeout` seconds."""
    address = host_port(target)
    if address is None or timeout <= 0:
        return NOT_PROBED, ""
    try:
        sock = socket.create_connection((address[0], int(address[1])), timeout=timeout)
    except OSError as e:
        return UNREACHABLE, e.strerror or str(e)
    with sock:
        name = (tls or {}).get("server_name") or address[0]
        return _handshake(sock, tls, name)


class OutageClock:
    """The connect deadline of one call (client/connection.h): timeout from
    the start of an outage; a connection that then stayed up for timeout
    ends it, one that drops sooner does not."""

    def __init__(self, timeout):
        self.timeout, self.started, self.connected_at = timeout, None, None

    def failed(self, now):
        if self.started is None or (self.connected_at is not None and
                                    self.connected_at > self.started and
                                    now - self.connected_at >= self.timeout):
            self.started = now
        return self.started + self.timeout

    def connected(self, now):
        self.connected_at = now


class ConnectionWaiter:
    """Follows the channel's connectivity and waits for it (thread-safe)."""

    def __init__(self, channel, target, connect_timeout, tls):
        self.channel, self.target, self.timeout, self.tls = channel, target, connect_timeout, tls
        self.state = None
        channel.subscribe(self._on_state, try_to_connect=False)

    def _on_state(self, state):
        self.state = state

    def close(self):
        self.channel.unsubscribe(self._on_state)

    def is_connection_failure(self, code):
        """UNAVAILABLE / DEADLINE_EXCEEDED with the channel not connected:
        the call did not reach the server."""
        return code in (_UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and \
            self.state != grpc.ChannelConnectivity.READY

    def wait(self, rpc, details, deadline):
        """Returns once connected; raises TlsError at once when a probe shows
        what is wrong, ConnectionFailedError at `deadline` (monotonic)."""
        while True:
            kind, detail = probe(self.target, self.tls,
                                 min(deadline - time.monotonic(), _PROBE_TIMEOUT))
            self._diagnose(rpc, details, kind, detail)
            future = grpc.channel_ready_future(self.channel)
            try:
                future.result(timeout=max(0.0, min(deadline - time.monotonic(), RETRY_INTERVAL)))
                return
            except grpc.FutureTimeoutError:
                future.cancel()
            if time.monotonic() >= deadline:
                raise self._no_connection(rpc, details, kind, detail)

    def _diagnose(self, rpc, details, kind, detail):
        def tls_error(explanation):  # First what to change, then gRPC's words.
            return TlsError(rpc, _UNAVAILABLE, explanation, note=f"gRPC: {details}")

        server, why = f"the server at {self.target}", f" ({detail})" if detail else ""
        if kind == TLS_SERVER and self.tls is None:
            raise tls_error(f"{server} speaks TLS and this client plaintext: set ca_file to "
                            "the PEM certificate of the CA that signed the server's certificate")
        if kind == PLAINTEXT_SERVER and self.tls is not None:
            raise tls_error(f"{server} does not speak TLS{why} and this client does (ca_file "
                            "is set): the server is plaintext (no tls block in its config); "
                            "drop ca_file, or turn on TLS in the server's config")
        if kind == SERVER_CERT_REFUSED:
            name = self.tls.get("server_name")
            raise tls_error(f"this client refused the certificate of {server}: "
                            f"{detail.rstrip('.')}. "
                            "ca_file must hold the CA that signed it, and it must name "
                            + (f"'{name}'" if name else "the target's host")
                            + " (server_name sets the name checked)")
        if kind == CLIENT_CERT_REFUSED and not self.tls.get("cert_file"):
            raise tls_error(f"{server} requires a client certificate{why}: set cert_file and "
                            "key_file (mutual TLS)")
        if kind == CLIENT_CERT_REFUSED:
            raise tls_error(f"{server} refused this client's certificate{why}: cert_file must "
                            "be signed by the CA of the server's tls.client_ca_file and valid "
                            "now")

    def _no_connection(self, rpc, details, kind, detail):
        seen = ""
        if kind == UNREACHABLE:
            seen = (f"nothing accepts connections there ({detail}): is tally-server running, "
                    "and is the target right?; ")
        elif kind == CLOSED:
            seen = f"it accepts connections and closes them ({detail}); "
        return ConnectionFailedError(
            rpc, _UNAVAILABLE, f"no connection to {self.target} (waited up to connect_timeout "
            f"= {self.timeout:g} s): {seen}last error: {details}")
