"""The warehouse's own certificate authority, for the embedded servers' TLS (``cryptography``).

``<tls dir>/ca.pem`` is the authority's certificate: what every client trusts
(``ssl.ca.location``). Each server and client certificate lives in one PEM file, its
private key first, then its certificate and the authority's: the form Kafka's PEM key
store, the Java and librdkafka clients (``ssl.key.location`` and
``ssl.certificate.location`` naming the same file), Quarkus and Python's ``ssl`` all read.
Keys are EC P-256, unencrypted (Kafka on Java 17 cannot read the PBES2 keys
``cryptography`` encrypts), so every file holding one is its owner's only (mode 0600).

A server certificate (``<dir>/<name>.pem``) names exactly the hosts it is issued for (a
client reaching the server by another name is refused, as it should be); a client's
(``<dir>/clients/<user>.pem``) says ``CN=<user>``. Each is issued again when it is
missing, names other hosts, was signed by an earlier authority, or expires within
``RENEW_BEFORE``; a file lock keeps two processes (``broker up`` and ``registry up``) from
making two authorities.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from filelock import FileLock

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CLIENTS_DIR = "clients"
CA_DAYS = 3650
LEAF_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
_PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class Authority:
    """The certificate authority kept in ``directory`` (made on first use)."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / CA_FILE

    def server(self, name: str, hosts: Sequence[str]) -> Path:
        """``<name>.pem`` (key + certificate + CA) for a server reached at ``hosts``: the
        one kept, unless it no longer fits."""
        return self._kept(self.directory / f"{name}.pem", name, hosts)

    def client(self, user: str) -> Path:
        """``clients/<user>.pem`` (key + certificate + CA) of a client whose certificate
        says ``CN=<user>``: the one kept, unless it no longer fits."""
        return self._kept(self.client_file(user), user, None)

    def client_file(self, user: str) -> Path:
        """Where ``client`` keeps the certificate of ``user``."""
        return self.directory / CLIENTS_DIR / f"{user}.pem"

    def _kept(self, path: Path, name: str, hosts: Sequence[str] | None) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        with FileLock(str(self.directory / ".lock")):
            _, ca = self._authority()
            if not _current(path, hosts, ca):
                self.issue(path, name, hosts=hosts)
        return path

    def issue(self, path: Path, name: str, hosts: Sequence[str] | None = None,
              not_after: dt.datetime | None = None) -> Path:
        """Write a new key and a certificate for ``CN=<name>`` signed by the authority at
        ``path``: a server's for ``hosts``, a client's without; valid until ``not_after``
        (default ``LEAF_DAYS`` from now)."""
        ca_key, ca_cert = self._authority()
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        # A server's certificate is its identity as a client too (a broker to its
        # controller).
        usage = [ExtendedKeyUsageOID.CLIENT_AUTH] + (
            [ExtendedKeyUsageOID.SERVER_AUTH] if hosts is not None else [])
        not_after = not_after or now + dt.timedelta(days=LEAF_DAYS)
        not_before = min(now - dt.timedelta(minutes=5), not_after - dt.timedelta(days=1))
        builder = (_builder(name, key, ca_cert.subject, not_before, not_after)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(_usage(sign=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca_key.public_key()), critical=False))
        if hosts is not None:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        write_private(path, _key_bytes(key) + cert.public_bytes(_PEM)
                       + ca_cert.public_bytes(_PEM))
        return path

    def _authority(self) -> tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]:
        """The CA's key and certificate, made on first use (and again once it nears
        expiry, which means reissuing every certificate it signed)."""
        key_file = self.directory / CA_KEY_FILE
        if key_file.is_file() and _current(self.ca_file, None, None):
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return key, x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (_builder(f"lakehouse CA {uuid.uuid4().hex[:12]}", key, None,
                         now - dt.timedelta(minutes=5), now + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(_usage(sign=True), critical=True)
                .sign(key, hashes.SHA256()))
        write_private(key_file, _key_bytes(key))
        _write(self.ca_file, cert.public_bytes(_PEM), 0o644)
        return key, cert


def common_name(path: str | Path) -> str:
    """The ``CN`` of the first certificate in a PEM file (a client's Kafka principal)."""
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _current(path: Path, hosts: Sequence[str] | None, ca: x509.Certificate | None) -> bool:
    """Whether the certificate in ``path`` exists, is good for ``RENEW_BEFORE`` more, (given
    ``ca``) was signed by it, and (given ``hosts``) names exactly those."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < RENEW_BEFORE:
        return False
    if ca is not None and _key_id(cert, x509.AuthorityKeyIdentifier) != _key_id(
            ca, x509.SubjectKeyIdentifier):
        return False
    if hosts is None:
        return True
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(names) == {_general_name(h) for h in hosts}


def _key_id(cert: x509.Certificate,
            kind: type[x509.AuthorityKeyIdentifier] | type[x509.SubjectKeyIdentifier]
            ) -> bytes | None:
    """The key identifier of ``kind`` in ``cert`` (None if it has none)."""
    try:
        value = cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    return value.key_identifier if isinstance(value, x509.AuthorityKeyIdentifier) \
        else value.digest


def _builder(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
             not_before: dt.datetime, not_after: dt.datetime) -> x509.CertificateBuilder:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False))


def _usage(sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=sign, crl_sign=sign, encipher_only=False,
                         decipher_only=False)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private(path: Path, data: bytes) -> None:
    """``data`` written to ``path`` readable by its owner only, replacing it whole."""
    _write(path, data, 0o600)


def write_private_properties(path: Path, properties: Mapping[str, str]) -> None:
    """A Java properties file (a server's settings, which may hold passwords) written
    readable by its owner only; backslashes escaped, as the format wants."""
    write_private(path, "".join(f"{key}={value.replace(chr(92), chr(92) * 2)}\n"
                                for key, value in properties.items()).encode())


def _write(path: Path, data: bytes, mode: int) -> None:
    """``data`` written to ``path`` with ``mode`` through a temporary file of this writer's
    own, renamed over it (a reader sees the old file or the new, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.chmod(mode)
    tmp.replace(path)
