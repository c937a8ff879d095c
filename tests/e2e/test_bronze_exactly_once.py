"""Exactly-once bronze: hard kills mid-batch, restart, every Kafka record exactly once."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.generator import Record
from lakehouse.io.delta_log import history as delta_history
from lakehouse.io.kafka_admin import TopicSpec, ensure_topics
from lakehouse.io.kafka_producer import produce
from tests.conftest import lakehouse, run_pipelines, write_config

pytestmark = pytest.mark.integration


def run_pipeline(config: Path, crash_at: str) -> subprocess.CompletedProcess:
    """The command's own process, killed at ``crash_at`` (it kills Python and its JVM)."""
    return lakehouse(config, "run", "--until-idle", "--table", "bronze.orders",
                     crash_at=crash_at)


def run_here(config: Path, spark: SparkSession) -> subprocess.CompletedProcess:
    """``run --until-idle --table bronze.orders`` on the suite's warm Spark session: a
    restart resumes from what the killed process left on disk (its commits, its
    checkpoint), not from anything of that process."""
    return run_pipelines(config, spark, ["bronze.orders"])


def bronze_rows(warehouse: Path) -> list[tuple[str, int, int]]:
    table = DeltaTable(str(warehouse / "bronze" / "orders")).to_pyarrow_table(
        columns=["topic", "partition", "offset"])
    return list(zip(*(table.column(c).to_pylist() for c in ("topic", "partition", "offset")),
                    strict=True))


def make_setup(broker: str, tmp_path: Path, n: int) -> tuple[Path, Path]:
    topic = f"orders.{tmp_path.name}"
    warehouse = tmp_path / "warehouse"
    config = write_config(tmp_path / "conf.yaml", broker, warehouse, max_offsets_per_trigger=250,
                          topics={"orders": topic})
    ensure_topics(broker, [TopicSpec(topic, 6)])
    # Identical payloads on purpose: they are distinct Kafka records and all must land.
    records = [Record(b"o-1", b'{"same":"payload"}', ()) if i % 10 == 0
               else Record(f"o-{i}".encode(), f'{{"i":{i}}}'.encode(), (("h", b"v"),))
               for i in range(n)]
    assert produce(broker, topic, records) == n
    return config, warehouse


@pytest.mark.parametrize("point", ["after_delta_commit", "before_delta_commit"])
def test_hard_kill_mid_batch_then_restart(broker: str, tmp_path: Path, point: str,
                                         spark: SparkSession) -> None:
    n = 1200
    config, warehouse = make_setup(broker, tmp_path, n)

    crashed = run_pipeline(config, crash_at=f"bronze.orders:{point}:1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    assert "crashing on purpose" in crashed.stderr
    history = delta_history(DeltaTable(str(warehouse / "bronze" / "orders")))
    written = [h for h in history if h.get("operation") == "WRITE"]
    # Batch 0 always landed; batch 1 landed only when the kill came after its commit.
    assert len(written) == (2 if point == "after_delta_commit" else 1)
    recorded = [sum(r["to"] - r["from"] for r in w["lakehouse.kafka_offsets"]) for w in written]
    assert all(0 < n <= 250 for n in recorded)  # maxOffsetsPerTrigger
    assert len(bronze_rows(warehouse)) == sum(recorded)

    finished = run_here(config, spark)
    assert finished.returncode == 0, finished.stderr[-3000:]
    if point == "after_delta_commit":
        assert "already in the table" in finished.stdout

    rows = bronze_rows(warehouse)
    assert len(rows) == n
    assert len(set(rows)) == n, "each (topic, partition, offset) exactly once"

    # A third run finds nothing new and writes nothing.
    version = DeltaTable(str(warehouse / "bronze" / "orders")).version()
    again = run_here(config, spark)
    assert again.returncode == 0, again.stderr[-3000:]
    assert DeltaTable(str(warehouse / "bronze" / "orders")).version() == version
    assert len(bronze_rows(warehouse)) == n


def test_commits_name_batch_and_offsets(broker: str, tmp_path: Path,
                                        spark: SparkSession) -> None:
    config, warehouse = make_setup(broker, tmp_path, 600)
    assert run_here(config, spark).returncode == 0
    table = DeltaTable(str(warehouse / "bronze" / "orders"))
    writes = [h for h in reversed(delta_history(table)) if h.get("operation") == "WRITE"]
    assert all(w["engineInfo"].startswith("Apache-Spark/") and "Delta-Lake/4." in w["engineInfo"]
               for w in writes)
    assert [w["lakehouse.batch_id"] for w in writes] == list(range(len(writes)))
    assert len(writes) >= 3  # 600 records, at most 250 per batch
    # The ranges from Spark's offset log name exactly the records the table holds.
    covered = [(r["topic"], r["partition"], offset) for w in writes
               for r in w["lakehouse.kafka_offsets"] for offset in range(r["from"], r["to"])]
    assert len(covered) == 600
    assert sorted(covered) == sorted(bronze_rows(warehouse))
    assert all(int(w["operationMetrics"]["numOutputRows"]) == (sum(
        r["to"] - r["from"] for r in w["lakehouse.kafka_offsets"])) for w in writes)
    assert table.metadata().partition_columns == ["ingest_date"]
    schema = {f.name: str(f.type) for f in table.schema().fields}
    assert {"key", "value", "topic", "partition", "offset", "timestamp", "headers",
            "ingested_at", "ingest_date"} <= set(schema)


def test_deleted_checkpoint_does_not_land_records_twice(broker: str, tmp_path: Path,
                                                        spark: SparkSession) -> None:
    import shutil
    config, warehouse = make_setup(broker, tmp_path, 300)
    assert run_here(config, spark).returncode == 0
    shutil.rmtree(warehouse / "_checkpoints" / "bronze.orders")
    topic = f"orders.{tmp_path.name}"
    produce(broker, topic, [Record(b"k", f'{{"late":{i}}}'.encode(), ()) for i in range(50)])
    result = run_here(config, spark)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "continuing after them" in result.stdout
    rows = bronze_rows(warehouse)
    assert len(rows) == len(set(rows)) == 350
