"""The PEM files of Client's TLS options, read and checked before a channel
is made (client/tls_files.cc), so that a wrong file is named at Client()
instead of surfacing later as a gRPC error ("empty address list" for a key
given as ca_file)."""
import ssl

from tally.errors import TallyError


def _read(path, what):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TallyError(f"{what}: cannot read '{path}': {e}") from None
    if b"-----BEGIN " not in data:
        raise TallyError(f"{what}: '{path}' is not a PEM file (no -----BEGIN line)")
    return data


def _check_certificate(data, path, what, needed):
    try:  # Parses every certificate in it; none is an error.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
            cadata=data.decode("ascii", "replace"))
    except ssl.SSLError:
        if b"PRIVATE KEY-----" in data:
            raise TallyError(f"{what}: '{path}' holds a private key, not a certificate: give "
                             f"{needed} (a private key goes in key_file)") from None
        raise TallyError(f"{what}: '{path}' holds no PEM certificate: give {needed}") from None


def read_tls_files(ca_file, cert_file, key_file):
    """(ca, certificate chain or None, key or None) as bytes, checked:
    TallyError naming the option, the path and what to give instead."""
    ca = _read(ca_file, "ca_file")
    _check_certificate(ca, ca_file, "ca_file",
                       "the PEM certificate of the CA that signed the server's certificate")
    if cert_file is None:
        return ca, None, None
    cert, key = _read(cert_file, "cert_file"), _read(key_file, "key_file")
    _check_certificate(cert, cert_file, "cert_file", "this client's PEM certificate")
    if b"PRIVATE KEY-----" not in key:
        raise TallyError(f"key_file: '{key_file}' " + (
            "holds a certificate, not a private key: give the key of cert_file"
            if b"CERTIFICATE-----" in key else "holds no PEM private key"))
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert_file, key_file)
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e.reason):
            raise TallyError(f"key_file: '{key_file}' is not the key of the certificate in "
                             "cert_file") from None
        raise TallyError(f"key_file: '{key_file}' cannot be used with cert_file: {e}") from None
    return ca, cert, key
