"""TLS for `mqtts://` brokers: verified by default, including brokers on link-local addresses.

paho wraps its socket with `context.wrap_socket(sock, server_hostname=<host
it connected to>)`. Two things are wrong with that host for verification:
a link-local address carries its `%zone` (`fe80::1%eth0`), which never matches
the certificate's IP SAN, and edged connects to addresses it resolved itself,
not to the name in the URL. `BrokerContext` replaces paho's host with the name
to verify (the URL's host name, or the address without its zone), so Python's
own hostname/IP check runs as usual. A pinned certificate is checked right
after the handshake, before paho sends CONNECT (with the credentials).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import ssl
from pathlib import Path

from edged.errors import ConfigError
from edged.publish.brokers import strip_zone
from edged.publish.settings import TlsSettings

_FINGERPRINT = re.compile(r"^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$")


class BrokerContext(ssl.SSLContext):
    """An SSLContext that verifies the name the user wrote, not the address paho dialled.

    `verify_names` maps a connect address to the name to check; an address not
    in it is checked without its zone.
    """

    verify_names: dict[str, str]
    pinned_sha256: bytes | None

    def wrap_socket(self, sock, *args, server_hostname=None, **kwargs):  # type: ignore[override]
        if server_hostname is not None:
            server_hostname = self.verify_names.get(server_hostname, strip_zone(server_hostname))
        return super().wrap_socket(sock, *args, server_hostname=server_hostname, **kwargs)


class _PinnedSocket(ssl.SSLSocket):
    """Checks the peer certificate's SHA-256 against the pin as soon as the handshake is done."""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        pinned = getattr(self.context, "pinned_sha256", None)
        certificate = self.getpeercert(binary_form=True)
        if pinned is None or certificate is None:
            raise ssl.SSLCertVerificationError("no certificate pin to compare with")
        actual = hashlib.sha256(certificate).digest()
        if not hmac.compare_digest(actual, pinned):
            shown = ":".join(f"{byte:02X}" for byte in actual)
            raise ssl.SSLCertVerificationError(
                f"certificate fingerprint SHA256 {shown} does not match mqtt.tls.fingerprint_sha256")


def parse_fingerprint(text: str) -> bytes:
    compact = text.strip()
    if compact.lower().startswith("sha256 fingerprint="):
        compact = compact.split("=", 1)[1]
    if not _FINGERPRINT.match(compact):
        raise ConfigError(f"mqtt.tls.fingerprint_sha256 {text!r} is not a SHA-256 fingerprint "
                          "(64 hex digits, colons allowed)")
    return bytes.fromhex(compact.replace(":", ""))


def _readable(path_text: str, key: str) -> str:
    path = Path(path_text).expanduser()
    if not path.is_file():
        reason = "is a directory" if path.is_dir() else "no such file"
        raise ConfigError(f"mqtt.tls.{key}: {path}: {reason}")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"mqtt.tls.{key}: {path}: not readable by this user")
    return str(path)


def _encrypted_key(*_args) -> bytes:
    raise ConfigError("mqtt.tls.key_file: the key is encrypted; edged needs an unencrypted key "
                      "(protect it with file permissions)")


def build_context(tls: TlsSettings, *, use_tls: bool) -> BrokerContext | None:
    """The context for paho's `tls_set_context`, or None for plaintext brokers.

    Files are read here, at start, so a missing or broken certificate is a
    configuration error (exit 78) before anything is sent.
    """
    configured = any([tls.ca_file, tls.cert_file, tls.key_file, tls.fingerprint_sha256, tls.insecure])
    if not use_tls:
        if configured:
            raise ConfigError("mqtt.tls is set but the brokers use mqtt://: use mqtts:// URLs "
                              "(edged does not send credentials or data in plaintext when TLS is configured)")
        return None
    if tls.insecure and tls.fingerprint_sha256:
        raise ConfigError("mqtt.tls: set either insecure or fingerprint_sha256, not both")
    context = BrokerContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_names = {}
    context.pinned_sha256 = None
    if tls.ca_file:
        path = _readable(tls.ca_file, "ca_file")
        try:
            context.load_verify_locations(cafile=path)
        except ssl.SSLError as exc:
            raise ConfigError(f"mqtt.tls.ca_file: {path}: not a PEM CA certificate ({exc.reason or exc})") from None
    else:
        context.load_default_certs()
    if tls.insecure or (tls.fingerprint_sha256 and not tls.ca_file):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.fingerprint_sha256:
        context.pinned_sha256 = parse_fingerprint(tls.fingerprint_sha256)
        context.sslsocket_class = _PinnedSocket
    if tls.key_file and not tls.cert_file:
        raise ConfigError("mqtt.tls.key_file is set without mqtt.tls.cert_file")
    if tls.cert_file:
        cert = _readable(tls.cert_file, "cert_file")
        key = _readable(tls.key_file, "key_file") if tls.key_file else None
        try:
            context.load_cert_chain(cert, key, password=_encrypted_key)
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            if "KEY_VALUES_MISMATCH" in reason:
                raise ConfigError(f"mqtt.tls.key_file {key} does not belong to mqtt.tls.cert_file {cert}") from None
            raise ConfigError(f"mqtt.tls.cert_file/key_file: {cert}: not a PEM certificate and key ({reason})") \
                from None
    return context


def describe_tls_error(exc: BaseException) -> str:
    """A one-line reason for a failed TLS connect ("certificate verify failed: …")."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or (exc.args[0] if exc.args else str(exc))
        return f"TLS certificate verification failed: {detail}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    return str(exc)
