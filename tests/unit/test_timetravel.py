"""Time-travel arithmetic without Spark: parsing --as-of, resolving versions, history rows,
and diffs by key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.timetravel import (
    Version,
    diff_tables,
    history_table,
    input_range,
    parse_as_of,
    resolve,
    row_counts,
)

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


def test_not_held_drops_exactly_the_coordinates_bronze_has() -> None:
    from lakehouse.runner import not_held
    batch = pa.table({"partition": pa.array([0, 0, 1, 2], pa.int32()),
                      "offset": pa.array([5, 6, 5, 7], pa.int64()), "v": ["a", "b", "c", "d"]})
    held = pa.table({"partition": pa.array([0, 1], pa.int32()),
                     "offset": pa.array([6, 6], pa.int64())})
    assert not_held(batch, held).column("v").to_pylist() == ["a", "c", "d"]
    assert not_held(batch, held.slice(0, 0)).num_rows == 4
