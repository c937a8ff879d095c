"""Why a TLS connection fails, told apart (Python's ``ssl``).

librdkafka reports an untrusted, an expired and a misnamed broker certificate all as the
same "certificate verify failed", and an HTTP client's error hides the cause in its
chain. ``diagnose`` makes one TLS handshake of its own with the same trust and client
certificate and names the cause with its own code, before any data moves: it runs only
once a client has failed, so a healthy start pays nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from lakehouse.errors import ErrorCode, LakehouseError

_UNTRUSTED = {18, 19, 20, 21, 2, 27, 28}
"""OpenSSL verify codes of a chain that leads to no trusted authority (self-signed,
unknown issuer, untrusted or rejected root)."""
_EXPIRED = {9, 10}  # not yet valid, expired
_MISNAMED = {62, 63, 64}  # host name, e-mail, IP address mismatch
_REJECTED = ("bad certificate", "certificate required", "unknown ca", "certificate unknown",
             "certificate expired")
"""Alerts a server sends when it refuses the client's certificate."""


@dataclass(frozen=True)
class Trust:
    """A client's TLS settings: the authorities it trusts (None: the system's), its own
    certificate and key, and whether it checks the server's host name."""

    ca_file: str | None = None
    ca_data: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = field(default=None, repr=False)
    check_hostname: bool = True
    verify: bool = True

    @classmethod
    def of(cls, properties: Mapping[str, str]) -> Trust:
        """The TLS settings of a client's librdkafka-style ``ssl.*`` properties (Kafka's and
        the schema registry client's)."""
        location = properties.get("ssl.ca.location")
        return cls(ca_file=None if location == "probe" else location,
                   ca_data=properties.get("ssl.ca.pem"),
                   cert_file=properties.get("ssl.certificate.location"),
                   key_file=properties.get("ssl.key.location"),
                   key_password=properties.get("ssl.key.password"),
                   check_hostname=properties.get("ssl.endpoint.identification.algorithm",
                                                 "https").lower() != "none",
                   verify=properties.get("enable.ssl.certificate.verification",
                                         "true").lower() != "false")

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        context.check_hostname = self.check_hostname and self.verify
        if not self.verify:
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file or self.cert_file,
                                    password=self.key_password)
        return context


def diagnose(host: str, port: int, trust: Trust, what: str, setting: str,
             timeout: float = 5.0) -> LakehouseError | None:
    """The coded error of a TLS handshake with ``host:port`` as ``trust`` makes it (None
    if it succeeds and the server keeps the connection): ``what`` names the server in
    the message, ``setting`` the config section its client settings are under."""
    where = f"{what} at {host}:{port}"
    if trust.cert_file and (ended := _expired(trust.cert_file)) is not None:
        return LakehouseError(
            ErrorCode.TLS_EXPIRED,
            f"this client's certificate {trust.cert_file} for {where} expired on {ended}",
            hint=f"renew it, and point ssl.certificate.location under {setting} at the new one "
                 "(the embedded broker reissues <warehouse>/_tls/clients/<user>.pem when it starts)",
            host=host, port=port)
    try:
        context = trust.context()
    except (OSError, ssl.SSLError) as exc:
        return LakehouseError(
            ErrorCode.TLS_FAILED, f"the TLS settings for {where} cannot be loaded: {exc}",
            hint=f"check the ssl.* files under {setting}: each must exist and be readable; "
                 "the key file must hold an unencrypted key or ssl.key.password its password",
            host=host, port=port)
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            # TLS 1.3: a server refusing the client's certificate says so after the
            # handshake; one that accepts it waits for a request.
            tls.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                tls.recv(1)
    except ssl.SSLCertVerificationError as exc:
        return _verify_error(exc, where, setting, host, port)
    except ssl.SSLError as exc:
        text = str(exc).lower()
        if any(alert in text for alert in _REJECTED):
            return LakehouseError(
                ErrorCode.TLS_CLIENT_REJECTED,
                f"{where} refused this client's certificate ({exc.reason or exc})",
                hint=f"set ssl.certificate.location and ssl.key.location under {setting} to a "
                     "certificate issued by an authority the server trusts (for the embedded "
                     "broker: <warehouse>/_tls/clients/<user>.pem, in both)", host=host, port=port)
        return LakehouseError(
            ErrorCode.TLS_FAILED, f"the TLS handshake with {where} failed: {exc}",
            hint="is TLS on at that port? (security.protocol SSL or SASL_SSL, an https:// URL)",
            host=host, port=port)
    except OSError:
        return None  # unreachable: the caller's own error says so
    return None


def _expired(cert_file: str) -> str | None:
    """When the certificate in ``cert_file`` expired, if it did (None: valid, or unreadable,
    which loading it then reports)."""
    try:
        ends = x509.load_pem_x509_certificate(Path(cert_file).read_bytes()).not_valid_after_utc
    except (OSError, ValueError):
        return None
    return f"{ends:%Y-%m-%d %H:%M} UTC" if ends < dt.datetime.now(dt.UTC) else None


def refusal(host: str, port: int, trust: Trust | None, what: str, setting: str,
            plaintext_fix: str) -> LakehouseError | None:
    """Where TLS is why a client of ``what`` at ``host:port`` failed, the coded cause: for a
    TLS client (``trust``), ``diagnose``; for a plaintext one (None), that the server wants
    TLS (``plaintext_fix`` says what to set). None when TLS is not to blame."""
    if trust is not None:
        return diagnose(host, port, trust, what, setting)
    return _plaintext_at_tls(host, port, what, plaintext_fix)


def _plaintext_at_tls(host: str, port: int, what: str, fix: str) -> LakehouseError | None:
    if not speaks_tls(host, port):
        return None
    return LakehouseError(
        ErrorCode.TLS_FAILED,
        f"{what} at {host}:{port} wants TLS, and this client connects without it",
        hint=fix, host=host, port=port)


def speaks_tls(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether the server at ``host:port`` completes a TLS handshake (its certificate
    unchecked: only whether TLS is on)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return True
    except (OSError, ssl.SSLError):
        return False


def _verify_error(exc: ssl.SSLCertVerificationError, where: str, setting: str, host: str,
                  port: int) -> LakehouseError:
    code, reason = exc.verify_code, exc.verify_message
    if code in _EXPIRED:
        return LakehouseError(
            ErrorCode.TLS_EXPIRED,
            f"the certificate of {where} is out of its validity period ({reason})",
            hint="the server needs a renewed certificate (the embedded ones renew when they "
                 "start: restart them); check this machine's clock too", host=host, port=port)
    if code in _MISNAMED:
        return LakehouseError(
            ErrorCode.TLS_HOST_MISMATCH,
            f"the certificate of {where} is not issued for {host!r} ({reason})",
            hint="reach the server by a name its certificate lists (the embedded servers' "
                 "certificates name the host they listen on), or have it reissued for this "
                 "name", host=host, port=port)
    if code in _UNTRUSTED:
        return LakehouseError(
            ErrorCode.TLS_UNTRUSTED,
            f"the certificate of {where} is signed by no authority this client trusts "
            f"({reason})",
            hint=f"set ssl.ca.location under {setting} to the server's CA file (the embedded "
                 "servers': <warehouse>/_tls/ca.pem)", host=host, port=port)
    return LakehouseError(
        ErrorCode.TLS_FAILED, f"the certificate of {where} was refused: {reason} ({code})",
        hint=f"check the server's certificate and ssl.ca.location under {setting}",
        host=host, port=port)
