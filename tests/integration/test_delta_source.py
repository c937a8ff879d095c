"""The ``delta-py`` streaming source on real Delta tables written by delta-rs."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from pyspark.errors import StreamingQueryException

from lakehouse.errors import ErrorCode
from lakehouse.io.delta_source import FORMAT_NAME, AddedFile, Commit, parse_commit, plan_versions
from lakehouse.runner import stream_error

pytestmark = pytest.mark.integration


def append(uri: Path, start: int, n: int, day: str = "2026-11-20") -> None:
    write_deltalake(str(uri), pa.table({"id": pa.array(range(start, start + n), pa.int64()),
                                        "day": [day] * n}),
                    mode="append", partition_by=["day"])


def stream(spark, uri: Path, checkpoint: Path, **options: str) -> list[list[tuple[int, int, str]]]:  # type: ignore[no-untyped-def]
    batches: list[list[tuple[int, int, str]]] = []

    def collect(df, batch_id: int) -> None:  # type: ignore[no-untyped-def]
        rows = [(r["id"], r["_commit_version"], r["day"]) for r in df.collect()]
        if rows:
            batches.append(sorted(rows))

    reader = spark.readStream.format(FORMAT_NAME).option("path", str(uri))
    for key, value in options.items():
        reader = reader.option(key, value)
    query = (reader.load().writeStream.foreachBatch(collect)
             .option("checkpointLocation", str(checkpoint)).trigger(processingTime="0.5 seconds")
             .start())
    try:
        query.processAllAvailable()
    except StreamingQueryException as exc:
        raise stream_error("test", exc) from None
    finally:
        query.stop()
    return batches


def test_versions_become_batches_within_the_cap_and_resume(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    uri = tmp_path / "t"
    for v in range(5):  # versions 0..4, one file each, 10 rows each
        append(uri, v * 10, 10, day=f"2026-11-2{v % 2}")
    batches = stream(spark, uri, tmp_path / "ckpt", maxFilesPerTrigger="2")
    assert [len(b) for b in batches] == [20, 20, 10]
    rows = [r for b in batches for r in b]
    assert sorted(r[0] for r in rows) == list(range(50))
    assert all(r[1] == r[0] // 10 for r in rows)  # each row names the version that added it
    assert all(r[2] == f"2026-11-2{r[1] % 2}" for r in rows)  # partition values restored

    append(uri, 50, 5)
    again = stream(spark, uri, tmp_path / "ckpt", maxFilesPerTrigger="2")
    assert again == [[(i, 5, "2026-11-20") for i in range(50, 55)]]


def test_a_vacuumed_version_is_a_clear_error(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    uri = tmp_path / "t"
    append(uri, 0, 10)
    append(uri, 10, 10)
    table = DeltaTable(str(uri))
    gone = next(f for f in table.file_uris() if f.endswith(".parquet"))
    os.remove(gone.removeprefix("file://"))
    with pytest.raises(Exception) as err:
        stream(spark, uri, tmp_path / "ckpt")
    assert getattr(err.value, "code", None) is ErrorCode.DELTA_VERSION_GONE


def test_commits_that_remove_data_stop_the_stream_unless_skipped(spark, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    uri = tmp_path / "t"
    append(uri, 0, 10)
    DeltaTable(str(uri)).delete("id < 5")
    append(uri, 10, 10)
    with pytest.raises(Exception) as err:
        stream(spark, uri, tmp_path / "ckpt1")
    assert getattr(err.value, "code", None) is ErrorCode.DELTA_CHANGE_COMMIT
    batches = stream(spark, uri, tmp_path / "ckpt2", skipChangeCommits="true")
    assert sorted(r[0] for b in batches for r in b) == list(range(20))


def test_plan_versions_admits_whole_versions_up_to_the_caps() -> None:
    def commit(v: int, files: int, rows: int) -> Commit:
        added = tuple(AddedFile(f"f{v}-{i}", v, (), rows) for i in range(files))
        return Commit(v, added, False, "WRITE")

    commits = {1: commit(1, 3, 100), 2: commit(2, 1, 100), 3: commit(3, 1, 100)}
    assert plan_versions(0, 3, commits, max_files=2, max_rows=None) == 1  # at least one
    assert plan_versions(1, 3, commits, max_files=2, max_rows=None) == 3
    assert plan_versions(0, 3, commits, max_files=None, max_rows=250) == 1
    assert plan_versions(0, 3, commits, max_files=None, max_rows=None) == 3


def test_parse_commit_reads_adds_and_data_removals() -> None:
    lines = ['{"commitInfo":{"operation":"DELETE"}}',
             '{"add":{"path":"day%3D1/a.parquet","partitionValues":{"day":"1"},'
             '"dataChange":true,"stats":"{\\"numRecords\\":7}"}}',
             '{"add":{"path":"b.parquet","partitionValues":{},"dataChange":false}}',
             '{"remove":{"path":"c.parquet","dataChange":true}}']
    commit = parse_commit(4, lines)
    assert commit.added == (AddedFile("day=1/a.parquet", 4, (("day", "1"),), 7),)
    assert commit.removes_data and commit.operation == "DELETE"
