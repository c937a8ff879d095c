"""The warehouse's authority and ``tls.diagnose``: certificates a real TLS handshake accepts,
kept owner-only and reissued when they no longer fit, and each way a handshake fails named
with its own code (a real TLS server on the loopback, in a thread)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lakehouse.errors import ErrorCode
from lakehouse.io.certificates import Authority, common_name
from lakehouse.io.tls import Trust, diagnose


@contextmanager
def tls_server(certificate: Path, client_ca: Path | None = None) -> Iterator[int]:
    """A TLS server on a free loopback port serving ``certificate`` (wanting a client
    certificate of ``client_ca`` if given) that answers nothing; its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate))
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(client_ca))
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(2)
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_certificates_are_owner_only_and_reissued_when_they_no_longer_fit(tmp_path: Path) -> None:
    authority = Authority(tmp_path / "tls")
    server = authority.server("broker", ["127.0.0.1"])
    client = authority.client("etl")
    for path in (server, client, tmp_path / "tls" / "ca.key"):
        assert path.stat().st_mode & 0o077 == 0, path
    text = server.read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----") and text.count("CERTIFICATE-----") == 4
    assert common_name(client) == "etl"
    assert authority.server("broker", ["127.0.0.1"]).read_bytes() == server.read_bytes()  # kept
    before = server.read_bytes()
    assert authority.server("broker", ["localhost"]).read_bytes() != before  # other hosts
    authority.issue(client, "etl", not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=3))
    soon = client.read_bytes()
    assert authority.client("etl").read_bytes() != soon  # expiring within 30 days: renewed
    assert client == tmp_path / "tls" / "clients" / "etl.pem"
    before, old_ca = client.read_bytes(), authority.ca_file.read_bytes()
    (tmp_path / "tls" / "ca.key").unlink()  # a new authority: what the old one signed goes
    after = authority.client("etl").read_bytes()
    assert authority.ca_file.read_bytes() != old_ca and after != before
    assert authority.ca_file.read_bytes() in after  # signed by, and carrying, the new one


def test_a_handshake_with_the_authority_s_certificates_succeeds(tmp_path: Path) -> None:
    authority = Authority(tmp_path / "tls")
    server = authority.server("broker", ["127.0.0.1"])
    with tls_server(server, client_ca=authority.ca_file) as port:
        trust = Trust.of({"ssl.ca.location": str(authority.ca_file),
                          "ssl.certificate.location": str(authority.client("etl")),
                          "ssl.key.location": str(authority.client("etl"))})
        assert diagnose("127.0.0.1", port, trust, "the broker", "kafka.client_properties") is None


def test_each_cause_of_a_failed_handshake_has_its_code(tmp_path: Path) -> None:
    authority, other = Authority(tmp_path / "tls"), Authority(tmp_path / "other")
    ours = Trust(ca_file=str(authority.ca_file))
    expired = authority.issue(tmp_path / "expired.pem", "broker", hosts=["127.0.0.1"],
                              not_after=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    cases = [
        (authority.server("broker", ["127.0.0.1"]), "localhost", ours, None,
         ErrorCode.TLS_HOST_MISMATCH),
        (other.server("broker", ["127.0.0.1"]), "127.0.0.1", ours, None,
         ErrorCode.TLS_UNTRUSTED),
        (expired, "127.0.0.1", ours, None, ErrorCode.TLS_EXPIRED),
        (authority.server("broker", ["127.0.0.1"]), "127.0.0.1", ours, authority.ca_file,
         ErrorCode.TLS_CLIENT_REJECTED),  # no client certificate
        (authority.server("broker", ["127.0.0.1"]), "127.0.0.1",
         Trust(ca_file=str(authority.ca_file), cert_file=str(other.client("etl"))),
         authority.ca_file, ErrorCode.TLS_CLIENT_REJECTED),  # another authority's
        (authority.server("broker", ["127.0.0.1"]), "127.0.0.1",
         Trust(ca_file=str(authority.ca_file), cert_file=str(authority.issue(
             tmp_path / "old-etl.pem", "etl", not_after=dt.datetime.now(dt.UTC)
             - dt.timedelta(hours=1)))), authority.ca_file, ErrorCode.TLS_EXPIRED),  # ours
        (authority.server("broker", ["127.0.0.1"]), "127.0.0.1",
         Trust(ca_file=str(tmp_path / "missing.pem")), None, ErrorCode.TLS_FAILED),
    ]
    for certificate, host, trust, client_ca, code in cases:
        with tls_server(certificate, client_ca) as port:
            error = diagnose(host, port, trust, "the broker", "kafka.client_properties")
        assert error is not None and error.code is code, (code, error)
        assert "kafka.client_properties" in error.hint or code in (
            ErrorCode.TLS_EXPIRED, ErrorCode.TLS_HOST_MISMATCH)


def test_a_plaintext_server_is_told_apart(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def close_at_once() -> None:
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.close()

    thread = threading.Thread(target=close_at_once, daemon=True)
    thread.start()
    error = diagnose("127.0.0.1", port, Trust(), "the broker", "kafka.client_properties")
    thread.join()
    listener.close()
    assert error is not None and error.code is ErrorCode.TLS_FAILED
    assert "TLS on at that port" in error.hint
