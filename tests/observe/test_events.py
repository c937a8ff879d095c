"""The event log's pure parts (progress and batch fields, lag, latency) and its writer
thread, on a real Delta table."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

from lakehouse.batch import BatchIO, DatasetName, EventTimes, Read, Written
from lakehouse.config import parse_config
from lakehouse.observe.events import (
    SCHEMA,
    EventLog,
    batch_fields,
    merged,
    progress_fields,
    source_lag,
    table_name,
)

KAFKA_SOURCE = {"description": "KafkaV2[Subscribe[shop.orders.v1]]",
                "endOffset": {"shop.orders.v1": {"0": 120, "1": 80}},
                "latestOffset": {"shop.orders.v1": {"0": 150, "1": 80}}}
DELTA_SOURCE = {"description": "DeltaSource[file:/w/bronze/orders]",
                "endOffset": json.dumps({"reservoirVersion": 7, "index": -1}),
                "latestOffset": json.dumps({"reservoirVersion": 9, "index": -1})}
PROGRESS = {"name": "bronze.orders", "batchId": 4, "runId": "r-1",
            "timestamp": "2026-12-01T10:00:00.000Z", "numInputRows": 200,
            "inputRowsPerSecond": 100.0, "processedRowsPerSecond": "NaN",
            "durationMs": {"addBatch": 900, "triggerExecution": 1200},
            "eventTime": {"watermark": "1970-01-01T00:00:00.000Z"},
            "stateOperators": [], "sources": [KAFKA_SOURCE]}


def test_lag_is_the_latest_offset_minus_the_batch_end_per_partition() -> None:
    assert source_lag([KAFKA_SOURCE]) == (30, {"shop.orders.v1:0": 30, "shop.orders.v1:1": 0})
    assert source_lag([DELTA_SOURCE]) == (None, {})  # a Delta source's lag is not Kafka's
    assert source_lag([{"endOffset": None, "latestOffset": None}]) == (None, {})


def test_progress_fields() -> None:
    fields = progress_fields(PROGRESS)
    assert fields["trigger_time"] == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert fields["duration_ms"] == {"addBatch": 900, "triggerExecution": 1200}
    assert fields["input_rows"] == 200 and fields["input_rows_per_second"] == 100.0
    assert fields["processed_rows_per_second"] is None  # NaN is no figure
    assert fields["watermark"] is None  # Spark's "no watermark" epoch
    assert fields["kafka_lag"] == 30 and fields["state_rows"] is None


def test_batch_fields_and_the_merge_with_progress() -> None:
    ended = datetime(2026, 12, 1, 10, 0, 2, tzinfo=UTC)
    ms = ended.timestamp() * 1000
    io = BatchIO([Read(DatasetName("file", "/w/bronze/orders"), 200, (7, 9))],
                 [Written("/w/silver/orders", 3, 180), Written("/w/silver/orders_quarantine",
                                                               None, 0)],
                 quarantined=12, duplicates=8,
                 event_times=EventTimes(ms - 9000, ms - 7000, ms - 5000, ms - 1000, ms - 10))
    fields = batch_fields(io, 1.5, ended, "/w")
    assert fields["output_rows"] == {"silver.orders": 180}  # no commit, no row
    assert (fields["quarantined"], fields["duplicates"], fields["input_rows"]) == (12, 8, 200)
    assert fields["input_version"] == 9
    assert (fields["latency_p50_ms"], fields["latency_p95_ms"], fields["latency_p99_ms"],
            fields["latency_max_ms"]) == (1000, 5000, 7000, 9000)
    row = merged({"pipeline": "silver.orders", **fields}, progress_fields(PROGRESS))
    assert row["input_rows"] == 200 and row["quarantined"] == 12
    assert row["duration_ms"] == {"addBatch": 900, "triggerExecution": 1200, "batch": 1500}
    assert row["trigger_time"] == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert table_name("s3://b/w/gold/x", "s3://b/w/") == "gold.x"
    assert table_name("/elsewhere/t", "/w") == "/elsewhere/t"


def test_rows_meet_their_progress_and_reach_the_table(tmp_path: Path) -> None:
    config = parse_config({"project": "t", "kafka": {"bootstrap_servers": "h:1"},
                           "warehouse": {"root": str(tmp_path)},
                           "observe": {"flush_seconds": 0.2}}, source_file="t.yaml")
    log = EventLog(config)
    io = BatchIO([Read(DatasetName("kafka://h:1", "shop.orders.v1"), 200)],
                 [Written(f"{tmp_path}/bronze/orders", 5, 200)])
    assert log.batch("bronze.orders", 4, "lineage-run", lambda: io) is io
    with contextlib.suppress(RuntimeError):
        log.batch("silver.orders", 9, None, _fails, streamed=False)
    log.progress(PROGRESS)
    log.progress({**PROGRESS, "batchId": 5, "numInputRows": 0})  # nothing ran: no row
    deadline = time.monotonic() + 30
    uri = str(tmp_path / "_system" / "events")
    while not (tmp_path / "_system" / "events" / "_delta_log").exists() \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    log.close()
    rows = DeltaTable(uri).to_pyarrow_table().sort_by("pipeline").to_pylist()
    assert DeltaTable(uri).schema().to_arrow().names == SCHEMA.names
    bronze, silver = rows
    assert (bronze["pipeline"], bronze["layer"], bronze["batch_id"]) == ("bronze.orders",
                                                                        "bronze", 4)
    assert bronze["run_id"] == "r-1" and bronze["kafka_lag"] == 30
    assert dict(bronze["output_rows"]) == {"bronze.orders": 200}
    assert dict(bronze["kafka_lag_by_partition"])["shop.orders.v1:0"] == 30
    assert silver["error"] == "the batch broke" and silver["input_rows"] is None
    totals = log.totals()
    assert totals["bronze.orders"].input_rows == 200 and totals["silver.orders"].failed_batches


def test_a_log_that_cannot_write_keeps_its_rows_and_never_raises(tmp_path: Path) -> None:
    config = parse_config({"project": "t", "kafka": {"bootstrap_servers": "h:1"},
                           "warehouse": {"root": str(tmp_path)}}, source_file="t.yaml")
    written: list[pa.Table] = []
    failing = [True]

    def write(rows: pa.Table) -> None:
        if failing[0]:
            raise OSError("disk full")
        written.append(rows)

    log = EventLog(config, write=write)
    log.batch("gold.x", 1, None, lambda: BatchIO([]), streamed=False)
    log.flush()
    assert not written
    failing[0] = False
    log.batch("gold.x", 2, None, lambda: BatchIO([]), streamed=False)
    log.close()
    assert [r["batch_id"] for t in written for r in t.to_pylist()] == [1, 2]


def _fails() -> BatchIO:
    raise RuntimeError("the batch broke\nat line 2")


def test_metrics_without_the_table_keep_totals_and_write_nothing(tmp_path: Path) -> None:
    config = parse_config({"project": "t", "kafka": {"bootstrap_servers": "h:1"},
                           "warehouse": {"root": str(tmp_path)},
                           "observe": {"events": False, "metrics_port": 9464}},
                          source_file="t.yaml")
    log = EventLog.for_run(config)
    assert log.enabled and not log.persist
    log.batch("gold.x", 1, None, lambda: BatchIO([Read(DatasetName("f", "s"), 7)]),
              streamed=False)
    log.close()
    assert log.totals()["gold.x"].input_rows == 7
    assert not (tmp_path / "_system").exists()
    assert not EventLog.for_run(parse_config(
        {"project": "t", "kafka": {"bootstrap_servers": "h:1"}, "warehouse": {"root": "/w"},
         "observe": {"events": False}}, source_file="t.yaml")).enabled


def test_progress_after_its_row_was_written_alone_is_not_a_second_row(tmp_path: Path) -> None:
    config = parse_config({"project": "t", "kafka": {"bootstrap_servers": "h:1"},
                           "warehouse": {"root": str(tmp_path)}}, source_file="t.yaml")
    written: list[pa.Table] = []
    log = EventLog(config, write=written.append)
    log.batch("bronze.orders", 4, None, lambda: BatchIO([]))
    log.flush(everything=True)  # its progress is late: the row goes alone
    log.progress(PROGRESS)  # then it comes
    log.progress({**PROGRESS, "batchId": 6})  # progress of a batch never recorded: its own row
    log.close()
    rows = [r for t in written for r in t.to_pylist()]
    assert [r["batch_id"] for r in rows] == [4, 6]
    assert rows[1]["ended_at"] == datetime(2026, 12, 1, 10, 0, 1, 200000, tzinfo=UTC)
    assert log.totals()["bronze.orders"].batches == 2
