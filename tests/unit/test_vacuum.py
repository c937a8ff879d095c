"""Vacuum and time travel on real Delta tables on disk (no Spark): the audit window is
enforced, vacuumed versions give a clear error, and versions a streaming query has not
read yet keep their files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, write_deltalake

from lakehouse.config import parse_config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.query import run_query
from lakehouse.timetravel import open_as_of, unread_versions, vacuum, versions


def config(root: Path):  # type: ignore[no-untyped-def]
    return parse_config({"project": "t", "kafka": {"bootstrap_servers": "127.0.0.1:1"},
                         "warehouse": {"root": str(root)},
                         "retention": {"audit_window_hours": 24}})


def test_vacuum_respects_the_audit_window_and_old_versions_fail_clearly(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    uri = str(tmp_path / "gold" / "t")
    for n in range(3):  # three versions, each replacing the rows (and files) before it
        write_deltalake(uri, pa.table({"k": [f"r{n}"], "n": [n]}), mode="overwrite")
    assert run_query(cfg, "SELECT n FROM gold.t", 0).to_pylist() == [{"n": 0}]

    with pytest.raises(LakehouseError) as err:
        vacuum(cfg, "gold.t", 0)
    assert err.value.code == ErrorCode.TIME_INSIDE_AUDIT_WINDOW
    assert vacuum(cfg, "gold.t", None).files == []  # the default keeps the audit window
    dry = vacuum(cfg, "gold.t", 0, force=True, dry_run=True)
    assert len(dry.files) == 2 and run_query(cfg, "SELECT n FROM gold.t", 0).num_rows == 1
    done = vacuum(cfg, "gold.t", 0, force=True)
    assert sorted(done.files) == sorted(dry.files)
    with pytest.raises(LakehouseError) as err:
        run_query(cfg, "SELECT n FROM gold.t", 0)
    assert err.value.code == ErrorCode.TIME_VACUUMED
    assert f"latest version is {DeltaTable(uri).version()}" in err.value.hint  # vacuum commits too
    assert run_query(cfg, "SELECT n FROM gold.t").to_pylist() == [{"n": 2}]


def test_versions_a_stream_has_not_read_keep_their_files(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    bronze = str(tmp_path / "bronze" / "orders")
    for n in range(4):
        write_deltalake(bronze, pa.table({"offset": [n]}), mode="overwrite" if n else "append")
    silver = str(tmp_path / "silver" / "orders")
    write_deltalake(silver, pa.table({"event_id": ["e"]}), mode="append",
                    commit_properties=CommitProperties(custom_metadata={
                        "lakehouse.bronze_versions": json.dumps({"from": 0, "to": 1})}))
    log = versions(open_as_of(cfg, "bronze.orders", None))
    assert unread_versions(cfg, "bronze.orders", log) == [2, 3]
    done = vacuum(cfg, "bronze.orders", 0, force=True)
    assert done.kept_versions == [2, 3]
    assert len(done.files) == 2  # the files of versions 0 and 1: silver has read them
    for unread in (2, 3):  # still readable
        assert run_query(cfg, "SELECT * FROM bronze.orders", unread).num_rows == 1
    with pytest.raises(LakehouseError) as err:
        run_query(cfg, "SELECT * FROM bronze.orders", 1)
    assert err.value.code == ErrorCode.TIME_VACUUMED
