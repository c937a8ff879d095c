"""Time-travel arithmetic: parsing --as-of, resolving versions, history rows (from the
commit metadata delta-spark writes), diffs by key, and vacuum's retention."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from lakehouse.audit.retention import CLOCK_MARGIN_SECONDS, effective_retention
from lakehouse.audit.timetravel import (
    Version,
    diff_tables,
    history_table,
    input_range,
    parse_as_of,
    resolve,
    row_counts,
)
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta_log import commit_metadata, relative_path

T0 = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)


def test_as_of_is_a_version_or_an_instant_naive_meaning_utc() -> None:
    assert parse_as_of("12") == 12
    assert parse_as_of("2026-11-20T18:00:00Z") == datetime(2026, 11, 20, 18, tzinfo=UTC)
    assert parse_as_of("2026-11-20 18:00") == datetime(2026, 11, 20, 18, tzinfo=UTC)
    assert parse_as_of("2026-11-20T19:00:00+01:00") == datetime(2026, 11, 20, 18, tzinfo=UTC)
    with pytest.raises(LakehouseError) as err:
        parse_as_of("last tuesday")
    assert err.value.code == ErrorCode.TIME_BAD_AS_OF


def log() -> list[Version]:
    return [Version(v, T0 + timedelta(minutes=30 * v), "MERGE", {}) for v in range(4)]


def test_resolve_versions_and_instants() -> None:
    assert resolve(log(), 2, "gold.t") == 2
    assert resolve(log(), T0 + timedelta(minutes=59), "gold.t") == 1
    assert resolve(log(), T0 + timedelta(minutes=60), "gold.t") == 2  # at the commit instant
    assert resolve(log(), T0 + timedelta(days=9), "gold.t") == 3
    for bad in (7, T0 - timedelta(seconds=1)):
        with pytest.raises(LakehouseError) as err:
            resolve(log(), bad, "gold.t")
        assert err.value.code == ErrorCode.TIME_NO_VERSION
        assert "keeps versions 0..3" in err.value.hint


def test_history_rows_from_commit_metadata() -> None:
    assert row_counts("MERGE", {"num_target_rows_inserted": 3, "num_target_rows_updated": 2,
                                "num_target_rows_deleted": 1}) == (3, 2, 1)
    assert row_counts("WRITE", {"num_added_rows": 50, "num_removed_rows": 0}) == (50, None, 0)
    assert input_range({"lakehouse.silver_versions": '{"from": 4, "to": 6}'}) == "silver v4..6"
    assert input_range({"lakehouse.kafka_offsets": [
        {"topic": "t", "partition": 0, "from": 10, "to": 15},
        {"topic": "t", "partition": 1, "from": 0, "to": 5}]}) == "kafka 10 offsets in 2 partitions"
    rows = history_table([
        Version(0, T0, "CREATE TABLE", {}),
        Version(1, T0, "MERGE", {"lakehouse.batch_id": 4, "lakehouse.run_id": "r-1",
                                 "lakehouse.query": "gold.t",
                                 "operationMetrics": {"num_target_rows_inserted": 7}}),
        Version(2, T0, "RESTORE", {"lakehouse.restored_to": 0})]).to_pylist()
    assert [r["version"] for r in rows] == [2, 1, 0]  # newest first
    assert rows[1]["rows_added"] == 7 and rows[1]["batch_id"] == 4 and rows[1]["run_id"] == "r-1"
    assert rows[0]["input"] == "restored to v0"


def test_history_rows_from_a_delta_spark_commit() -> None:
    """delta-spark's metric names (strings), the project's keys in ``userMetadata``."""
    assert row_counts("MERGE", {"numTargetRowsInserted": "3", "numTargetRowsUpdated": "2",
                                "numTargetRowsDeleted": "0", "numOutputRows": "5"}) == (3, 2, 0)
    assert row_counts("WRITE", {"numFiles": "6", "numOutputRows": "3000"}) == (3000, None, None)
    assert row_counts("DELETE", {"numDeletedRows": "4", "numCopiedRows": "9"}) == (None, None, 4)
    assert row_counts("RESTORE", {"numRestoredFiles": "1", "numRemovedFiles": "2"}) == \
        (None, None, None)
    commit = commit_metadata({
        "timestamp": 1795524100205, "operation": "MERGE", "version": 1,
        "operationMetrics": {"numTargetRowsInserted": "27", "numTargetRowsUpdated": "0",
                             "numTargetRowsDeleted": "0"},
        "userMetadata": json.dumps({
            "lakehouse.app_id": "gold.t:q", "lakehouse.batch_id": 1, "lakehouse.query": "gold.t",
            "lakehouse.run_id": "r-2", "lakehouse.silver_versions": '{"from": 1, "to": 3}'})})
    row = history_table([Version(1, T0, "MERGE", commit)]).to_pylist()[0]
    assert (row["rows_added"], row["rows_updated"], row["rows_removed"]) == (27, 0, 0)
    assert (row["batch_id"], row["run_id"], row["query"], row["input"]) == \
        (1, "r-2", "gold.t", "silver v1..3")
    bronze = commit_metadata({"userMetadata": json.dumps({"lakehouse.kafka_offsets": [
        {"topic": "t", "partition": 0, "from": 0, "to": 499, "records": 499}]})})
    assert input_range(bronze) == "kafka 499 offsets in 1 partitions"


def test_vacuum_retention_keeps_what_unread_versions_need() -> None:
    log = [Version(v, T0 + timedelta(hours=v), "WRITE", {}) for v in range(4)]
    now = T0 + timedelta(hours=10, minutes=30)
    assert effective_retention(2, log, [], now) == 2
    assert effective_retention(-1, log, [], now) == 0
    assert effective_retention(0.2, log, [], now) == 1  # whole hours, rounded up
    # The readers read up to version 1 (committed 9.5 h ago): its files stay, and after it.
    assert effective_retention(2, log, [2, 3], now) == 10
    assert effective_retention(24, log, [2, 3], now) == 24
    # The margin for the clocks: a commit exactly 10 h old keeps 11 h.
    assert effective_retention(0, log, [2, 3], T0 + timedelta(hours=11)) == \
        10 + math.ceil(CLOCK_MARGIN_SECONDS / 3600)
    # Nothing in the log was read yet: keep every file.
    assert effective_retention(2, log, [0, 1, 2, 3], now) is None
    assert effective_retention(2, log[2:], [2, 3], now) is None


def test_vacuumed_files_are_named_relative_to_the_table() -> None:
    uri = "/wh/bronze/orders"
    assert relative_path("file:/wh/bronze/orders/d=1/part-0.parquet", uri) == "d=1/part-0.parquet"
    assert relative_path("file:///wh/bronze/orders/part-0.parquet", uri + "/") == "part-0.parquet"
    assert relative_path("s3://b/wh/t/part-0.parquet", "s3://b/wh/t") == "part-0.parquet"
    assert relative_path("file:/elsewhere/x.parquet", uri) == "file:/elsewhere/x.parquet"


def test_diff_by_key_ignores_bookkeeping_columns() -> None:
    old = pa.table({"k": ["a", "b", "c"], "n": [1, 2, 3], "updated_at": [0, 0, 0]})
    new = pa.table({"k": ["a", "b", "d"], "n": [1, 5, 4], "updated_at": [9, 9, 9]})
    d = diff_tables(old, new, ["k"])
    assert d.added.to_pylist() == [{"k": "d", "n": 4, "updated_at": 9}]
    assert d.removed.to_pylist() == [{"k": "c", "n": 3, "updated_at": 0}]
    assert d.changed.to_pylist() == [{"k": "b", "n": 5, "n__was": 2}]  # a: only updated_at
    same = diff_tables(old, old, ["k"])
    assert same.added.num_rows == same.removed.num_rows == same.changed.num_rows == 0
    whole = diff_tables(old, new, [])
    assert (whole.added.num_rows, whole.removed.num_rows, whole.changed.num_rows) == (3, 3, 0)
