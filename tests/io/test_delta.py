"""Delta I/O on real Spark and real Delta tables: idempotent appends, overwrites and
merges written by delta-spark, read back without a JVM by delta-rs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from deltalake import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from lakehouse.io.delta import append, appended_rows, arrow_schema, ensure_table, merge, read_files, replace
from lakehouse.io.delta_log import (
    BatchCommit,
    BatchMarks,
    adds_files,
    commit_metadata,
    history,
    latest_version,
    max_kafka_offsets,
    rewriting,
)

SCHEMA = T.StructType([T.StructField("k", T.StringType()), T.StructField("n", T.LongType())])


def test_commit_metadata_merges_user_metadata() -> None:
    commit = BatchCommit("q:1", 7, {"lakehouse.query": "bronze.x", "lakehouse.kafka_offsets": [
        {"topic": "t", "partition": 0, "from": 0, "to": 3, "records": 3}]})
    info = commit_metadata({"operation": "WRITE", "userMetadata": commit.user_metadata()})
    assert info["operation"] == "WRITE"
    assert info["lakehouse.app_id"] == "q:1" and info["lakehouse.batch_id"] == 7
    assert info["lakehouse.kafka_offsets"][0]["to"] == 3
    assert commit_metadata({"userMetadata": "not json"}) == {"userMetadata": "not json"}


def test_append_commits_each_batch_once(spark: SparkSession, tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    ensure_table(uri, SCHEMA, change_feed=True)
    rows = spark.createDataFrame([("a", 1), ("b", 2)], SCHEMA)
    first = append(rows, uri, BatchCommit("writer-1", 0, {"lakehouse.query": "q"}))
    assert first.written and first.rows == 2 and first.version == latest_version(uri)
    again = append(rows, uri, BatchCommit("writer-1", 0))
    assert not again.written  # the replay of batch 0 after a crash: skipped
    assert spark.read.format("delta").load(uri).count() == 2
    other = append(rows, uri, BatchCommit("writer-2", 0))  # another writer's batch 0
    assert other.written and spark.read.format("delta").load(uri).count() == 4

    commits = history(DeltaTable(uri))
    assert commits[-2]["lakehouse.query"] == "q" and commits[-2]["lakehouse.batch_id"] == 0
    assert commits[0]["engineInfo"].startswith("Apache-Spark/4.") \
        and "Delta-Lake/4." in commits[0]["engineInfo"]


def test_a_create_killed_before_its_first_commit_is_created_again(
        spark: SparkSession, tmp_path: Path) -> None:
    uri = tmp_path / "t"
    (uri / "_delta_log" / "_staged_commits").mkdir(parents=True)  # what a kill mid-create leaves
    (uri / "_delta_log" / ".00000000000000000000.json.3f2a.tmp").write_text("{")
    ensure_table(str(uri), SCHEMA)
    assert latest_version(str(uri)) == 0
    append(spark.createDataFrame([("a", 1)], SCHEMA), str(uri), BatchCommit("w", 0))
    ensure_table(str(uri), SCHEMA)  # a table with commits is left alone
    assert spark.read.format("delta").load(str(uri)).count() == 1


def test_merge_and_replace_are_idempotent(spark: SparkSession, tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    ensure_table(uri, SCHEMA)
    append(spark.createDataFrame([("a", 1), ("b", 2)], SCHEMA), uri, BatchCommit("w", 0))
    upserts = spark.createDataFrame([("b", 20), ("c", 3)], SCHEMA)

    def clauses(m):  # type: ignore[no-untyped-def]
        return m.whenMatchedUpdateAll().whenNotMatchedInsertAll()

    done = merge(upserts, uri, "t.k = s.k", clauses, BatchCommit("w", 1), keys=["k"])
    assert done.written and done.rows == 2
    assert not merge(upserts.selectExpr("k", "n * 10 AS n"), uri, "t.k = s.k", clauses,
                     BatchCommit("w", 1)).written
    data = {r["k"]: r["n"] for r in spark.read.format("delta").load(uri).collect()}
    assert data == {"a": 1, "b": 20, "c": 3}
    assert json.loads(history(DeltaTable(uri))[0]["lakehouse.keys"]) == ["k"]

    swapped = replace(spark.createDataFrame([("a", 100)], SCHEMA), uri,
                      BatchCommit("w", 2), where="k = 'a'")
    assert swapped.written
    assert not replace(spark.createDataFrame([("a", 5)], SCHEMA), uri, BatchCommit("w", 2),
                       where="k = 'a'").written
    data = {r["k"]: r["n"] for r in spark.read.format("delta").load(uri).collect()}
    assert data == {"a": 100, "b": 20, "c": 3}


def test_appended_rows_leave_out_rewriting_commits(spark: SparkSession, tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    ensure_table(uri, SCHEMA, change_feed=True)
    append(spark.createDataFrame([("a", 1), ("b", 2)], SCHEMA), uri, BatchCommit("w", 0))
    replace(spark.createDataFrame([("a", 10)], SCHEMA), uri, BatchCommit("w", 1), where="k = 'a'")
    append(spark.createDataFrame([("c", 3)], SCHEMA), uri, BatchCommit("w", 2))
    changes = (spark.read.format("delta").option("readChangeFeed", "true")
               .option("startingVersion", 0).load(uri))
    assert rewriting(uri, 0, 3) == [2] and rewriting(uri, 3, 3) == []
    rows = {(r["k"], r["_commit_version"])
            for r in appended_rows(changes, rewriting(uri, 0, 3)).collect()}
    assert rows == {("a", 1), ("b", 1), ("c", 3)}  # version 2 (the overwrite) is left out
    assert "_change_type" not in appended_rows(changes, []).columns


def test_read_files_reads_the_files_the_log_keeps(spark: SparkSession, tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    schema = T.StructType([*SCHEMA.fields, T.StructField("day", T.StringType())])
    ensure_table(uri, schema, ("day",))
    append(spark.createDataFrame([("a", 1, "d1"), ("b", 2, "d2")], schema), uri,
           BatchCommit("w", 0), ("day",))
    append(spark.createDataFrame([("c", 30, "d1")], schema), uri, BatchCommit("w", 1), ("day",))
    # A rewrite removes a file: its rows are gone from what the log lists.
    replace(spark.createDataFrame([("a", 10, "d1")], schema), uri, BatchCommit("w", 2),
            where="day = 'd1'", partition_by=("day",))

    def keys(select: str) -> set[tuple[str, int]]:
        return {(r["k"], r["n"]) for r in read_files(spark, uri, ["k", "n"], select).collect()}

    assert keys("day IN ('d1')") == {("a", 10)}
    assert keys("day IN ('d1', 'd2')") == {("a", 10), ("b", 2)}
    assert keys("n >= 5") == {("a", 10)}  # files whose statistics allow n >= 5
    assert keys("FALSE") == set()


def test_max_kafka_offsets_read_without_a_jvm(spark: SparkSession, tmp_path: Path) -> None:
    uri = str(tmp_path / "bronze")
    rows = spark.createDataFrame([("t", 0, 5), ("t", 0, 7), ("t", 1, 2)],
                                 "topic string, partition int, offset long")
    append(rows, uri, BatchCommit("b", 0))
    assert max_kafka_offsets(uri) == {"t": {"0": 8, "1": 3}}
    assert max_kafka_offsets(str(tmp_path / "none")) == {}


def test_another_process_sees_what_each_writer_committed(spark: SparkSession,
                                                        tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    ensure_table(uri, SCHEMA)
    rows = spark.createDataFrame([("a", 1)], SCHEMA)
    for batch in (3, 4):
        append(rows, uri, BatchCommit("w", batch))
    append(rows, uri, BatchCommit("x", 0))
    marks = BatchMarks()  # a process that has not read this log yet
    assert marks.last_batch(uri, "w") == 4 and marks.last_batch(uri, "x") == 0
    assert marks.last_batch(uri, "nobody") is None
    append(rows, uri, BatchCommit("x", 1))  # read from the entries committed since
    assert marks.last_batch(uri, "x") == 1 and marks.last_batch(uri, "w") == 4
    assert not append(rows, uri, BatchCommit("w", 2)).written  # older than w's last batch
    shutil.rmtree(tmp_path / "t")  # a table made again at the same place starts afresh
    ensure_table(uri, SCHEMA)
    assert marks.last_batch(uri, "w") is None
    assert append(rows, uri, BatchCommit("w", 0)).written


def test_ensure_table_creates_once_and_redoes_a_create_killed_before_its_commit(
        spark: SparkSession, tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    (tmp_path / "t" / "_delta_log").mkdir(parents=True)  # a create killed before its commit
    ensure_table(uri, SCHEMA, description="a table")
    assert DeltaTable(uri).version() == 0
    assert DeltaTable(uri).schema().to_arrow().names == ["k", "n"]
    other = T.StructType([T.StructField("x", T.StringType())])
    ensure_table(uri, other)  # it exists: left as it is, no new commit
    assert DeltaTable(uri).version() == 0
    assert DeltaTable(uri).schema().to_arrow().names == ["k", "n"]


def test_a_range_adds_files_only_where_a_commit_added_data(tmp_path: Path) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake
    uri = str(tmp_path / "t")
    ensure_table(uri, SCHEMA, change_feed=True)  # version 0: the create, no file
    assert not adds_files(uri, 0, 0)
    write_deltalake(uri, pa.Table.from_pylist([{"k": "a", "n": 1}], arrow_schema(SCHEMA)),
                    mode="append")  # version 1: one file
    DeltaTable(uri).delete("k = 'a'")  # version 2: a removal only
    assert latest_version(uri) == 2
    assert adds_files(uri, 0, 2) and adds_files(uri, 1, 1)
    assert not adds_files(uri, 2, 2)
