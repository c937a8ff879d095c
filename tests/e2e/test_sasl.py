"""Authenticated Kafka: the embedded broker with SASL/PLAIN and KRaft's StandardAuthorizer,
the pipelines running on credentials taken from the environment, a wrong password and a
missing ACL each failing fast with its own code, and no secret written anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from tests.conftest import assert_gold_verified, free_port, lakehouse, write_config

pytestmark = pytest.mark.integration

SECRETS = {"LH_TEST_ADMIN_PASSWORD": "adm-7f3c91e2", "LH_TEST_ETL_PASSWORD": "etl-d4a8b05c",
           "LH_TEST_OUTSIDER_PASSWORD": "out-19e6f7aa"}
TOPICS = ["shop.orders.v1", "web.clickstream.v1"]


def sasl_config(path: Path, bootstrap: str, warehouse: Path, user: str, password: str) -> Path:
    """A config whose embedded broker wants SASL, its client connecting as ``user``."""
    write_config(path, bootstrap, warehouse, embedded=True, kafka={
        "client_properties": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                              "sasl.username": user, "sasl.password": password}})
    doc = yaml.safe_load(path.read_text())
    doc["kafka"]["embedded"].update({
        "sasl_users": {"admin": "${LH_TEST_ADMIN_PASSWORD}", "etl": "${LH_TEST_ETL_PASSWORD}",
                       "outsider": "${LH_TEST_OUTSIDER_PASSWORD}"},
        "admin_user": "admin", "topic_acls": {"etl": TOPICS}})
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(bootstrap, warehouse) of a SASL broker of this test's own, stopped afterwards."""
    bootstrap, warehouse = f"127.0.0.1:{free_port()}", tmp_path / "warehouse"
    config = sasl_config(tmp_path / "admin.yaml", bootstrap, warehouse, "admin",
                         "${LH_TEST_ADMIN_PASSWORD}")
    up = lakehouse(config, "broker", "up", env=SECRETS)
    assert up.returncode == 0, up.stderr[-3000:]
    yield bootstrap, warehouse
    lakehouse(config, "broker", "down", env=SECRETS)


def test_pipelines_run_on_credentials_from_the_environment_and_leak_none(
        secured: tuple[str, Path], tmp_path: Path, spark: SparkSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap, warehouse = secured
    etl = sasl_config(tmp_path / "etl.yaml", bootstrap, warehouse, "etl",
                      "${LH_TEST_ETL_PASSWORD}")
    outputs = []
    for args in (("produce", "orders", "--count", "300", "--faults", "0.1"),
                 ("produce", "clickstream", "--count", "100"), ("run", "--until-idle")):
        done = lakehouse(etl, *args, env=SECRETS)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs += [done.stdout, done.stderr]
    # What `verify gold` checks (it reads Delta only, no Kafka), on the suite's warm Spark
    # session, the config's secrets taken from the environment as the command takes them.
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    assert_gold_verified(etl, spark)
    bronze = DeltaTable(str(warehouse / "bronze" / "orders")).to_pyarrow_table(columns=["offset"])
    assert bronze.num_rows == 300

    wrong = lakehouse(etl, "run", "--until-idle",
                      env={**SECRETS, "LH_TEST_ETL_PASSWORD": "not-the-password"})
    assert wrong.returncode == 2, wrong.stderr[-3000:]
    assert "LH-KAFKA-007" in wrong.stderr and "sasl.password" in wrong.stderr
    assert "starting Spark" not in wrong.stdout and "not-the-password" not in wrong.stderr

    outsider = sasl_config(tmp_path / "outsider.yaml", bootstrap, warehouse, "outsider",
                           "${LH_TEST_OUTSIDER_PASSWORD}")
    denied = lakehouse(outsider, "run", "--until-idle", env=SECRETS)
    assert denied.returncode == 2, denied.stderr[-3000:]
    assert "LH-KAFKA-008" in denied.stderr and "User:outsider" in denied.stderr
    assert "starting Spark" not in denied.stdout
    outputs += [wrong.stdout, wrong.stderr, denied.stdout, denied.stderr]

    # No secret in any output, Delta log, checkpoint, lineage event or log file; only the
    # broker's own properties file (owner-only) holds the passwords.
    properties = warehouse / "_broker" / "server.properties"
    assert properties.stat().st_mode & 0o077 == 0
    leaks = [str(p) for p in warehouse.rglob("*") if p.is_file() and p != properties
             and any(s.encode() in p.read_bytes() for s in SECRETS.values())]
    leaks += [f"output {n}" for n, text in enumerate(outputs)
              if any(s in text for s in SECRETS.values())]
    assert not leaks, leaks
    assert (warehouse / "_lineage" / "spark.jsonl").stat().st_size > 0  # there was lineage

