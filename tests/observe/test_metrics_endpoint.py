"""The Prometheus endpoint as a scraper meets it: on the loopback by default, behind basic
auth and TLS when configured, and an idle connection stalling no other scrape (a real
server on a free port, a real TLS handshake with a certificate of a real authority)."""

from __future__ import annotations

import base64
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lakehouse.batch import BatchIO, DatasetName, Read
from lakehouse.config import parse_config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.certificates import Authority
from lakehouse.observe.events import EventLog
from lakehouse.observe.metrics import serving
from tests.conftest import free_port


def _log(tmp_path: Path, **observe: object) -> tuple[EventLog, object]:
    config = parse_config({"project": "t", "kafka": {"bootstrap_servers": "h:1"},
                           "warehouse": {"root": str(tmp_path)},
                           "observe": {"events": False, **observe}}, source_file="t.yaml")
    log = EventLog.for_run(config)
    log.batch("gold.x", 1, None, lambda: BatchIO([Read(DatasetName("f", "s"), 7)]),
              streamed=False)
    return log, config.observe


def _own_address() -> str:
    """This machine's address on its network (a UDP socket's route outwards sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        address = str(probe.getsockname()[0])
    assert not address.startswith("127."), address
    return address


def _get(url: str, context: ssl.SSLContext | None = None,
         auth: tuple[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_the_endpoint_binds_the_loopback_by_default(tmp_path: Path) -> None:
    port = free_port()
    log, observe = _log(tmp_path, metrics_port=port)
    said: list[str] = []
    with serving(log, observe, said.append) as url:  # type: ignore[arg-type]
        assert url == f"http://127.0.0.1:{port}/metrics"
        status, text = _get(url)
        assert status == 200 and 'lakehouse_input_records_total{pipeline="gold.x"} 7.0' in text
        # Nothing answers at the machine's own address on its network.
        with pytest.raises(OSError), socket.create_connection((_own_address(), port), timeout=2):
            pass
    assert not any("warning" in line for line in said)


def test_basic_auth_and_tls_when_exposed(tmp_path: Path) -> None:
    authority = Authority(tmp_path / "tls")
    certificate = authority.server("metrics", ["127.0.0.1"])
    port = free_port()
    log, observe = _log(tmp_path, metrics_port=port, metrics_host="0.0.0.0",
                        metrics_users={"prometheus": "scrape-pw-5e1"},
                        metrics_certificate=str(certificate))
    trusted = ssl.create_default_context(cafile=str(authority.ca_file))
    said: list[str] = []
    with serving(log, observe, said.append) as url:  # type: ignore[arg-type]
        assert url == f"https://0.0.0.0:{port}/metrics"
        local = f"https://127.0.0.1:{port}/metrics"
        # A client that connects and never handshakes stalls no one else.
        with socket.create_connection(("127.0.0.1", port)):
            status, text = _get(local, trusted, ("prometheus", "scrape-pw-5e1"))
        assert status == 200 and "lakehouse_batches_total" in text
        assert _get(local, trusted)[0] == 401
        assert _get(local, trusted, ("prometheus", "wrong"))[0] == 401
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _get(local, ssl.create_default_context(), ("prometheus", "scrape-pw-5e1"))
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            _get(f"http://127.0.0.1:{port}/metrics")  # plain HTTP to the TLS port
    assert said[0].endswith("(basic auth)") and len(said) == 1  # auth and TLS: no warning
    assert "scrape-pw-5e1" not in " ".join(said)


def test_an_open_endpoint_on_every_interface_is_warned_of(tmp_path: Path) -> None:
    port = free_port()
    log, observe = _log(tmp_path, metrics_port=port, metrics_host="0.0.0.0")
    said: list[str] = []
    with serving(log, observe, said.append) as url:  # type: ignore[arg-type]
        assert url is not None
        status, _ = _get(url.replace("0.0.0.0", _own_address()))
        assert status == 200
    assert "open to anyone" in said[1]


@pytest.mark.parametrize("what", ["no key", "missing"])
def test_a_certificate_file_it_cannot_use_is_a_config_error(tmp_path: Path, what: str) -> None:
    authority = Authority(tmp_path / "tls")
    authority.server("metrics", ["127.0.0.1"])
    cert = tmp_path / "cert.pem"
    if what == "no key":
        cert.write_bytes(authority.ca_file.read_bytes())
    port = free_port()
    log, observe = _log(tmp_path, metrics_port=port, metrics_certificate=str(cert))
    with pytest.raises(LakehouseError) as caught, serving(log, observe, print):  # type: ignore[arg-type]
        pass
    assert caught.value.code is ErrorCode.CONFIG_BAD_VALUE
    assert caught.value.params["key"] == "observe.metrics_certificate"


def test_basic_auth_without_tls_off_the_loopback_is_warned_of(tmp_path: Path) -> None:
    log, observe = _log(tmp_path, metrics_port=free_port(), metrics_host="0.0.0.0",
                        metrics_users={"prometheus": "scrape-pw-5e1"})
    said: list[str] = []
    with serving(log, observe, said.append):  # type: ignore[arg-type]
        pass
    assert "passwords in clear" in said[1] and "scrape-pw-5e1" not in " ".join(said)
