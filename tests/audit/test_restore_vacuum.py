"""Vacuum and restore on real Delta tables written by delta-spark: the audit window is
enforced, vacuumed versions give a clear error, versions a streaming query has not read
yet keep what their change feed needs, and a restore records why in its commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse import graph
from lakehouse.audit.retention import horizon, restore, unread_versions, vacuum
from lakehouse.audit.timetravel import open_as_of, versions
from lakehouse.batch import BRONZE_VERSIONS, RUN_ID
from lakehouse.config import Config, parse_config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta import (
    RETENTION_CHECK_CONF,
    USER_METADATA_CONF,
    ensure_table,
    keep_properties,
)
from lakehouse.io.delta_log import history
from lakehouse.query import run_query


def config(root: Path) -> Config:
    return parse_config({"project": "t", "kafka": {"bootstrap_servers": "127.0.0.1:1"},
                         "warehouse": {"root": str(root)},
                         "retention": {"audit_horizon_days": 1}})


def write(spark: SparkSession, uri: str, n: int, mode: str = "overwrite",
          metadata: dict[str, str] | None = None) -> None:
    """One commit of one row (one file) ``{"k": "r<n>", "n": n}``."""
    writer = (spark.createDataFrame([(f"r{n}", n)], "k string, n long").coalesce(1)
              .write.format("delta").mode(mode))
    if metadata:
        writer = writer.option("userMetadata", json.dumps(metadata))
    writer.save(uri)


def files_of(uri: str, version: int) -> set[str]:
    dt = DeltaTable(uri, version=version)
    return {str(Path(f).relative_to(uri)) for f in dt.file_uris()}


def test_vacuum_keeps_the_audit_horizon_and_old_versions_fail_clearly(
        tmp_path: Path, spark: SparkSession) -> None:
    cfg = config(tmp_path)
    uri = str(tmp_path / "gold" / "t")
    for n in range(3):  # three versions, each replacing the rows (and files) before it
        write(spark, uri, n)
    assert run_query(cfg, "SELECT n FROM gold.t", 0).to_pylist() == [{"n": 0}]

    with pytest.raises(LakehouseError) as err:
        vacuum(graph.build(cfg), "gold.t", 0, spark=spark)
    assert err.value.code == ErrorCode.INSIDE_AUDIT_HORIZON and "1 days" in str(err.value)
    assert vacuum(graph.build(cfg), "gold.t", None, spark=spark).files == []  # the horizon is kept
    dry = vacuum(graph.build(cfg), "gold.t", 0, erasure=True, dry_run=True, spark=spark)
    assert sorted(dry.files) == sorted(files_of(uri, 0) | files_of(uri, 1))
    assert run_query(cfg, "SELECT n FROM gold.t", 0).num_rows == 1  # nothing deleted
    done = vacuum(graph.build(cfg), "gold.t", 0, erasure=True, spark=spark)
    assert sorted(done.files) == sorted(dry.files)
    assert not any((Path(uri) / f).exists() for f in done.files)
    with pytest.raises(LakehouseError) as err:
        run_query(cfg, "SELECT n FROM gold.t", 0)
    assert err.value.code == ErrorCode.TIME_VACUUMED
    assert f"latest version is {DeltaTable(uri).version()}" in err.value.hint  # vacuum commits too
    assert run_query(cfg, "SELECT n FROM gold.t").to_pylist() == [{"n": 2}]
    # The horizon says how far back the table reads now: from version 2 (the one current
    # when the erasure's retention began), and its retention is not the horizon's yet.
    reach = horizon(cfg, "gold.t")
    assert (reach.oldest_version, reach.oldest_readable) == (0, 2) and reach.last_vacuum
    assert run_query(cfg, "SELECT n FROM gold.t", reach.oldest_readable).num_rows == 1
    assert not reach.retention_kept
    assert keep_properties(uri, cfg.retention.delta_properties) is True
    assert keep_properties(uri, cfg.retention.delta_properties) is False, "once"
    assert horizon(cfg, "gold.t").retention_kept
    assert DeltaTable(uri).metadata().configuration["delta.logRetentionDuration"] == \
        "interval 24 hours"
    # Delta's own minimum retention is switched off for the call only.
    assert spark.conf.get(RETENTION_CHECK_CONF) == "true"


def test_versions_a_stream_has_not_read_keep_their_files(
        tmp_path: Path, spark: SparkSession) -> None:
    cfg = config(tmp_path)
    bronze = str(tmp_path / "bronze" / "orders")
    ensure_table(bronze, spark.createDataFrame([], "k string, n long").schema,
                 change_feed=True)  # version 0
    write(spark, bronze, 1, "append")  # 1
    write(spark, bronze, 2)  # 2: removes version 1's file
    write(spark, bronze, 3)  # 3: removes version 2's file
    silver = str(tmp_path / "silver" / "orders")
    write(spark, silver, 0, "append", {BRONZE_VERSIONS: json.dumps({"from": 0, "to": 1})})
    log = versions(open_as_of(cfg, "bronze.orders", None))
    assert unread_versions(graph.build(cfg), "bronze.orders", log) == [2, 3]

    # Everything after version 1 was committed within the hour (Delta's unit): kept.
    done = vacuum(graph.build(cfg), "bronze.orders", 0, erasure=True, spark=spark)
    assert (done.files, done.kept_versions) == ([], [2, 3])
    # The change feed of versions 2 and 3 reads the files they removed and added.
    changes = (spark.read.format("delta").option("readChangeFeed", "true")
               .option("startingVersion", 2).load(bronze))
    assert sorted((r._commit_version, r.n, r._change_type) for r in changes.collect()) == [
        (2, 1, "delete"), (2, 2, "insert"), (3, 2, "delete"), (3, 3, "insert")]

    # Once silver has read every version, the files only older versions need go.
    write(spark, silver, 1, "append", {BRONZE_VERSIONS: json.dumps({"from": 2, "to": 3})})
    done = vacuum(graph.build(cfg), "bronze.orders", 0, erasure=True, spark=spark)
    assert done.kept_versions == []
    assert sorted(done.files) == sorted(files_of(bronze, 1) | files_of(bronze, 2))
    assert run_query(cfg, "SELECT n FROM bronze.orders").to_pylist() == [{"n": 3}]
    with pytest.raises(LakehouseError) as err:
        run_query(cfg, "SELECT * FROM bronze.orders", 2)
    assert err.value.code == ErrorCode.TIME_VACUUMED


def test_nothing_is_vacuumed_before_a_reader_has_read_anything(
        tmp_path: Path, spark: SparkSession) -> None:
    cfg = config(tmp_path)
    bronze = str(tmp_path / "bronze" / "orders")
    for n in range(3):
        write(spark, bronze, n)
    write(spark, str(tmp_path / "silver" / "orders"), 0)  # records no bronze versions
    done = vacuum(graph.build(cfg), "bronze.orders", 0, erasure=True, spark=spark)
    assert (done.files, done.kept_versions) == ([], [0, 1, 2])
    assert run_query(cfg, "SELECT n FROM bronze.orders", 0).to_pylist() == [{"n": 0}]


def test_restore_commits_the_old_contents_and_records_why(
        tmp_path: Path, spark: SparkSession) -> None:
    cfg = config(tmp_path)
    uri = str(tmp_path / "gold" / "t")
    for n in range(3):
        write(spark, uri, n)
    done = restore(cfg, "gold.t", 0, "audit check", spark=spark)
    assert (done.table, done.target, done.previous, done.version) == ("gold.t", 0, 2, 3)
    assert run_query(cfg, "SELECT n FROM gold.t").to_pylist() == [{"n": 0}]
    commit = history(DeltaTable(uri))[0]
    assert commit["operation"] == "RESTORE" and commit["version"] == 3
    assert (commit["lakehouse.restored_to"], commit["lakehouse.restored_from"],
            commit["lakehouse.reason"]) == (0, 2, "audit check")
    assert commit[RUN_ID]
    assert spark.conf.get(USER_METADATA_CONF, None) is None  # set for the call only
    write(spark, uri, 5)  # later commits carry no restore metadata
    assert "lakehouse.restored_to" not in history(DeltaTable(uri))[0]

    with pytest.raises(LakehouseError) as err:
        restore(cfg, "gold.t", 4, spark=spark)  # the version it is at
    assert err.value.code == ErrorCode.TIME_NO_VERSION
    vacuum(graph.build(cfg), "gold.t", 0, erasure=True, spark=spark)
    with pytest.raises(LakehouseError) as err:
        restore(cfg, "gold.t", 1, spark=spark)  # its files are gone
    assert err.value.code == ErrorCode.TIME_VACUUMED
