"""Encrypted and authenticated on every wire: the embedded broker with TLS (SASL_SSL, and SSL
with client certificates) and KRaft's StandardAuthorizer, the registry on HTTPS with basic
auth, the metrics endpoint on HTTPS with basic auth; the pipelines running end to end on
credentials from the environment; each refusal (a wrong password, a missing ACL, an
untrusted, misnamed or expired certificate, no client certificate, a plaintext client, a
wrong registry password) a coded error before any data moves; and no secret, in clear or
base64, in any file a run wrote or any output it printed."""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.io.certificates import Authority
from tests.conftest import assert_gold_verified, free_port, lakehouse, write_config

pytestmark = pytest.mark.integration

SECRETS = {"LH_TEST_ADMIN_PASSWORD": "adm-7f3c91e2", "LH_TEST_ETL_PASSWORD": "etl-d4a8b05c",
           "LH_TEST_OUTSIDER_PASSWORD": "out-19e6f7aa", "LH_TEST_REGISTRY_PASSWORD": "reg-5b0e2d71",
           "LH_TEST_METRICS_PASSWORD": "met-a93c6e04"}
TOPICS = ["shop.orders.v1", "web.clickstream.v1"]


def edited(path: Path, **changes: object) -> Path:
    """The config at ``path`` with ``section.key`` (dots: nesting) values replaced, written
    beside it under the name of its first change."""
    doc = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    out = path.with_name(f"{next(iter(changes))}-{len(list(path.parent.iterdir()))}.yaml")
    out.write_text(yaml.safe_dump(doc))
    return out


def secured_config(tmp_path: Path, bootstrap: str, warehouse: Path, client: dict,
                   **embedded: object) -> Path:
    """A config whose embedded broker wants TLS (and ``embedded``), its client ``client``;
    the Spark event log on, under ``tmp_path``."""
    events = tmp_path / "spark-events"
    events.mkdir(exist_ok=True)
    path = write_config(tmp_path / "etl.yaml", bootstrap, warehouse, embedded=True,
                        kafka={"client_properties": client},
                        spark={"conf": {"spark.eventLog.enabled": "true",
                                        "spark.eventLog.dir": str(events)}})
    doc = yaml.safe_load(path.read_text())
    doc["kafka"]["embedded"].update({"tls": True, "topic_acls": {"etl": TOPICS}, **embedded})
    path.write_text(yaml.safe_dump(doc))
    return path


def run(config: Path, *args: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    done = lakehouse(config, *args, env={**SECRETS, **(env or {})})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout, done.stderr


def refused(config: Path, code: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    """``run --until-idle`` failing with ``code`` before Spark starts; its output."""
    done = lakehouse(config, "run", "--until-idle", env={**SECRETS, **(env or {})})
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"[{code}]" in done.stderr, done.stderr[-3000:]
    assert "starting Spark" not in done.stdout
    return done.stdout, done.stderr


def bronze_rows(warehouse: Path, table: str = "orders") -> int:
    return DeltaTable(str(warehouse / "bronze" / table)).to_pyarrow_table(
        columns=["offset"]).num_rows


@pytest.fixture
def sasl_ssl(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(config of user etl, warehouse): a SASL_SSL broker and an HTTPS registry with basic
    auth of this test's own, the orders in Avro, metrics on HTTPS with basic auth."""
    bootstrap, warehouse = f"127.0.0.1:{free_port()}", tmp_path / "warehouse"
    config = secured_config(tmp_path, bootstrap, warehouse, {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "etl",
        "sasl.password": "${LH_TEST_ETL_PASSWORD}"}, sasl_users={
        "admin": "${LH_TEST_ADMIN_PASSWORD}", "etl": "${LH_TEST_ETL_PASSWORD}",
        "outsider": "${LH_TEST_OUTSIDER_PASSWORD}"})
    metrics = Authority(warehouse / "_tls").server("metrics", ["127.0.0.1"])
    doc = yaml.safe_load(config.read_text())
    doc["schema_registry"] = {
        "url": f"https://127.0.0.1:{free_port()}/apis/ccompat/v7",
        "embedded": {"users": {"etl": "${LH_TEST_REGISTRY_PASSWORD}"}},
        "client_properties": {"basic.auth.user.info": "etl:${LH_TEST_REGISTRY_PASSWORD}"}}
    doc["sources"] = {"orders": {"format": "avro"}}
    doc["observe"].update({"metrics_port": free_port(), "metrics_certificate": str(metrics),
                           "metrics_users": {"prometheus": "${LH_TEST_METRICS_PASSWORD}"}})
    config.write_text(yaml.safe_dump(doc))
    run(config, "broker", "up")
    yield config, warehouse
    for server in ("registry", "broker"):
        lakehouse(config, server, "down", env=SECRETS)


def test_the_pipelines_run_over_sasl_ssl_with_every_refusal_coded_and_no_secret_anywhere(
        sasl_ssl: tuple[Path, Path], tmp_path: Path, spark: SparkSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config, warehouse = sasl_ssl
    outputs: list[str] = []
    for args in (("produce", "orders", "--count", "300", "--faults", "0.1"),
                 ("produce", "clickstream", "--count", "100"), ("run", "--until-idle"),
                 ("report", "--output", str(tmp_path / "report.html"))):
        outputs += run(config, *args)
    assert re.search(r"silver.orders: bronze 300 = silver \d+ \+ quarantined \d+ \+ "
                     r"duplicates \d+ \(holds\)", outputs[4]), outputs[4][-2000:]
    assert "metrics (Prometheus) at https://127.0.0.1:" in outputs[4]
    for name, value in SECRETS.items():  # `verify gold` on the suite's Spark session
        monkeypatch.setenv(name, value)
    assert_gold_verified(config, spark)
    assert bronze_rows(warehouse) == 300

    other_ca = Authority(tmp_path / "other")
    other_ca.server("x", ["127.0.0.1"])
    bootstrap = yaml.safe_load(config.read_text())["kafka"]["bootstrap_servers"]
    client = yaml.safe_load(config.read_text())["kafka"]["client_properties"]
    cases = [
        (config, "LH-KAFKA-007", {"LH_TEST_ETL_PASSWORD": "not-the-password"}),
        (edited(config, kafka__client_properties={
            **client, "sasl.username": "outsider",
            "sasl.password": "${LH_TEST_OUTSIDER_PASSWORD}"}), "LH-KAFKA-008", {}),
        (edited(config, kafka__client_properties={
            **client, "ssl.ca.location": str(other_ca.ca_file)}), "LH-TLS-001", {}),
        (edited(config, kafka__bootstrap_servers=bootstrap.replace("127.0.0.1", "localhost"),
                kafka__embedded__enabled=False, kafka__client_properties={
                    **client, "ssl.ca.location": str(warehouse / "_tls" / "ca.pem")}),
         "LH-TLS-003", {}),
        (edited(config, kafka__client_properties={**client, "security.protocol":
                                                  "SASL_PLAINTEXT"}), "LH-TLS-005", {}),
        (edited(config, schema_registry__client_properties={
            "basic.auth.user.info": "etl:not-the-password"}), "LH-REGISTRY-005", {}),
        (edited(config, schema_registry__client_properties={}), "LH-REGISTRY-005", {}),
    ]
    for case, code, env in cases:
        out, err = refused(case, code, env)
        outputs += [out, err]
    assert "User:outsider" in " ".join(outputs)
    assert bronze_rows(warehouse) == 300  # nothing moved, nothing lost

    # No secret in clear or base64 in any file the runs wrote (logs, the Spark event log,
    # lineage, the event log table, checkpoints, Delta logs and userMetadata, the report,
    # the broker's data and log, the registry's settings and database) or in any output.
    # Only the broker's own properties file (owner-only) holds the passwords; only each
    # key file holds its private key.
    assert any((tmp_path / "spark-events").iterdir())
    assert (warehouse / "_lineage" / "spark.jsonl").stat().st_size > 0
    assert (tmp_path / "report.html").stat().st_size > 0
    properties = warehouse / "_broker" / "server.properties"
    assert properties.stat().st_mode & 0o077 == 0
    assert_nothing_leaks(tmp_path, outputs, allowed={properties})


def test_ssl_with_client_certificates(tmp_path: Path, spark: SparkSession) -> None:
    """A broker wanting a client certificate of the warehouse's authority, each one's CN its
    user: the pipelines on etl's certificate; none, an expired one and one no ACL allows
    refused with their codes."""
    bootstrap, warehouse = f"127.0.0.1:{free_port()}", tmp_path / "warehouse"
    etl = warehouse / "_tls" / "clients" / "etl.pem"
    config = secured_config(tmp_path, bootstrap, warehouse, {
        "security.protocol": "SSL", "ssl.certificate.location": str(etl),
        "ssl.key.location": str(etl)})
    run(config, "broker", "up")
    try:
        outputs: list[str] = []
        for args in (("produce", "orders", "--count", "120"),
                     ("produce", "clickstream", "--count", "40"), ("run", "--until-idle")):
            outputs += run(config, *args)
        assert "silver.orders: bronze 120 = " in outputs[4], outputs[4][-2000:]
        assert_gold_verified(config, spark)
        assert bronze_rows(warehouse) == 120

        authority = Authority(warehouse / "_tls")
        expired = authority.issue(tmp_path / "expired-etl.pem", "etl",
                                  not_after=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        nobody = authority.client("nobody")
        for client, code in (({"security.protocol": "SSL"}, "LH-TLS-004"),
                             ({"security.protocol": "SSL", "ssl.certificate.location":
                               str(expired), "ssl.key.location": str(expired)}, "LH-TLS-002"),
                             ({"security.protocol": "SSL", "ssl.certificate.location":
                               str(nobody), "ssl.key.location": str(nobody)}, "LH-KAFKA-008")):
            outputs += refused(edited(config, kafka__client_properties=client), code)
        assert "User:nobody" in outputs[-1]
        assert bronze_rows(warehouse) == 120
        assert_nothing_leaks(tmp_path, outputs, allowed=set())
    finally:
        lakehouse(config, "broker", "down")


def assert_nothing_leaks(root: Path, outputs: list[str], allowed: set[Path]) -> None:
    """No secret of ``SECRETS`` in clear or base64 (at any alignment, as in a basic auth
    header), and no private key outside its own file, in any file under ``root`` but
    ``allowed`` or in any output."""
    needles = {s.encode() for s in SECRETS.values()}
    for secret in SECRETS.values():
        for pad in range(3):
            encoded = base64.b64encode(b"\0" * pad + secret.encode())
            needles.add(encoded[4 if pad else 0:-4])
    keys = {path: _key_body(path) for path in root.rglob("*.pem") if _key_body(path)}
    keys |= {path: _key_body(path) for path in root.rglob("ca.key")}
    assert keys and all(p.stat().st_mode & 0o077 == 0 for p in keys), keys
    leaks = []
    for path in (p for p in root.rglob("*") if p.is_file() and p not in allowed):
        data = path.read_bytes()
        leaks += [f"{path}: {n!r}" for n in needles if n in data]
        leaks += [f"{path}: the key of {k}" for k, body in keys.items()
                  if k != path and body in data]
    for n, text in enumerate(outputs):
        leaks += [f"output {n}: {s!r}" for s in needles if s.decode() in text]
        leaks += [f"output {n}: the key of {k}" for k, body in keys.items()
                  if body.decode() in text]
    assert not leaks, leaks


def _key_body(path: Path) -> bytes:
    """The first line of the private key in a PEM file (b'' if it holds none)."""
    lines = path.read_bytes().splitlines()
    starts = [i for i, line in enumerate(lines) if line == b"-----BEGIN PRIVATE KEY-----"]
    return lines[starts[0] + 1] if starts else b""
