"""Time travel over the warehouse the gold tests built: every table the pipelines write
reads in delta-rs and DuckDB, gold as analysts saw it after the first run (later runs
changed it), its history, a diff by key, and a restore round trip."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse import graph
from lakehouse.audit.timetravel import diff, open_as_of, versions
from lakehouse.audit.verify import compare
from lakehouse.catalog import table_names, table_uri
from lakehouse.config import load_config
from lakehouse.io.delta_log import history as commit_history
from lakehouse.io.delta_log import open_table
from lakehouse.query import run_query
from tests.conftest import assert_chains_verified
from tests.e2e.gold_world import NOW, World

pytestmark = pytest.mark.integration

TABLE = "gold.revenue_by_category_5m"
KEYS = ["window_start", "window_end", "category"]
PIPELINE_TABLES = {
    "bronze.orders", "bronze.clickstream", "silver.orders", "silver.orders_quarantine",
    "silver.clickstream", "silver.clickstream_quarantine", "gold.revenue_by_category_5m",
    "gold.revenue_by_country_daily", "gold.active_users_1m", "gold.sessions_daily"}
CHANGE_FEED = {"bronze.orders", "bronze.clickstream", "silver.orders", "silver.clickstream"}


def _norm(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return tuple(_norm(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _norm(v)) for k, v in value.items()))
    return value


def _rows(data: pa.Table) -> list[tuple[Any, ...]]:
    return sorted((tuple(_norm(v) for v in r.values()) for r in data.to_pylist()), key=repr)


def test_every_pipeline_table_reads_in_delta_rs_and_duckdb(world: World) -> None:
    """delta-spark writes every table; delta-rs (history, diff, explain) and DuckDB
    (lakehouse query) must read each one, latest and as of an earlier version."""
    config = load_config(world.config)
    names = table_names(config)  # with the bookkeeping tables (_batches, gold state, ...)
    assert not PIPELINE_TABLES - set(names), names
    for name in names:
        dt = open_table(table_uri(config, name))
        assert dt is not None, name
        props = dt.metadata().configuration
        assert props.get("delta.enableDeletionVectors") != "true", name
        if name in CHANGE_FEED:
            assert props.get("delta.enableChangeDataFeed") == "true", name
        data = dt.to_pyarrow_table()
        if name in PIPELINE_TABLES and not name.endswith("_quarantine"):
            assert data.num_rows > 0, name
        answer = run_query(config, f"SELECT * FROM {name}")
        assert [(f.name, f.type) for f in answer.schema] == \
            [(f.name, f.type) for f in pa.schema(dt.schema().to_arrow())], name
        assert _rows(answer) == _rows(data), name
        earlier = dt.version() - 1
        if earlier >= 0:
            then = run_query(config, f"SELECT count(*) AS n FROM {name}", earlier)
            assert then.to_pylist() == [{"n": open_table(table_uri(config, name),
                                                         version=earlier).count()}], name


def test_queries_as_of_a_version_or_an_instant_see_the_earlier_gold(world: World) -> None:
    config = load_config(world.config)
    version = world.revenue_version_after_run1  # type: ignore[attr-defined]
    uri = config.warehouse.table_uri("gold", "revenue_by_category_5m")
    then = DeltaTable(uri, version=version).to_pyarrow_table()
    sql = f"SELECT * FROM {TABLE}"
    now = run_query(config, sql)
    assert not compare(now, then, KEYS, TABLE, None).equal  # later batches changed gold
    old = run_query(config, sql, version)
    check = compare(old, then, KEYS, TABLE, version)
    assert check.equal and check.rows == then.num_rows, check.describe()
    # The same through an instant: just before the next commit, given as naive UTC text.
    log = versions(open_as_of(config, TABLE, None))
    following = next(v for v in log if v.version == version + 1)
    instant = (following.at - timedelta(milliseconds=1)).replace(tzinfo=None).isoformat()
    done = world.run("query", "--as-of", instant, "--format", "json",
                     f"SELECT count(*) AS n, sum(orders) AS o FROM {TABLE}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [{"n": then.num_rows,
                                        "o": sum(then.column("orders").to_pylist())}]
    # Before the table existed: a clear error, not an empty answer.
    done = world.run("query", "--as-of", "2000-01-01T00:00:00Z", f"SELECT 1 FROM {TABLE}")
    assert done.returncode == 2 and "LH-TIME-002" in done.stderr


def test_history_lists_versions_with_run_ids(world: World) -> None:
    done = world.run("history", TABLE, "--format", "json")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    commits = {c["version"]: c for c in commit_history(DeltaTable(
        str(world.warehouse / "gold" / "revenue_by_category_5m")))}
    assert [r["version"] for r in rows] == sorted(commits, reverse=True)
    merges = [r for r in rows if r["operation"] == "MERGE"]
    assert merges and all(r["run_id"] == commits[r["version"]]["lakehouse.run_id"]
                          and r["input"].startswith("silver v") for r in merges)
    assert sum(r["rows_added"] for r in merges) >= 1


def test_diff_and_restore_round_trip(world: World, spark: SparkSession) -> None:
    config = load_config(world.config)
    old = world.revenue_version_after_run1  # type: ignore[attr-defined]
    uri = config.warehouse.table_uri("gold", "revenue_by_category_5m")
    latest = DeltaTable(uri).version()
    result, _, _ = diff(graph.build(config), TABLE, old, latest)
    assert result.keys == KEYS
    # The late events of run 2 went into windows run 1 had created: changed, not added.
    late = {(r["window_start"], r["category"])
            for r in world.late_window_before.values()}  # type: ignore[attr-defined]
    changed = {(r["window_start"], r["category"]) for r in result.changed.to_pylist()}
    assert late <= changed
    assert all(r["window_start"] > NOW - timedelta(hours=4) or
               (r["window_start"], r["category"]) in late for r in result.added.to_pylist())

    done = world.run("restore", TABLE, "--to", str(old), "--reason", "audit check")
    assert done.returncode == 2 and "LH-CLI-002" in done.stderr  # no terminal, no --yes
    done = world.run("restore", TABLE, "--to", str(old), "--yes", "--reason", "audit check")
    assert done.returncode == 0, done.stderr[-2000:]
    restored = DeltaTable(uri)
    assert restored.version() == latest + 1
    back, _, _ = diff(graph.build(config), TABLE, old, latest + 1)
    assert back.added.num_rows == back.removed.num_rows == back.changed.num_rows == 0
    done = world.run("restore", TABLE, "--to", str(latest), "--yes")
    assert done.returncode == 0, done.stderr[-2000:]
    again, _, _ = diff(graph.build(config), TABLE, latest, latest + 2)
    assert again.added.num_rows == again.removed.num_rows == again.changed.num_rows == 0
    history = json.loads(world.run("history", TABLE, "--limit", "2", "--format", "json").stdout)
    assert [h["operation"] for h in history] == ["RESTORE", "RESTORE"]
    assert [h["input"] for h in history] == [f"restored to v{latest}", f"restored to v{old}"]
    commit = next(c for c in commit_history(DeltaTable(uri)) if c["version"] == latest + 1)
    assert commit["lakehouse.reason"] == "audit check"
    assert commit["lakehouse.restored_from"] == latest
    # Restores and a vacuum that keeps the horizon leave every chain whole.
    done = world.run("vacuum")
    assert done.returncode == 0, done.stderr[-2000:]
    assert_chains_verified(world.config, spark)


def test_auditor_notebook_executes(world: World) -> None:
    uri = str(world.warehouse / "gold" / "revenue_by_category_5m")
    before = DeltaTable(uri).to_pyarrow_table()
    _, text = world.notebook("auditor_time_travel.ipynb")
    assert "by window_start, window_end, category" in text  # the diff by key
    assert "Kafka offsets the whole version was built from" in text
    assert "RESTORE" in text
    assert "routed by silver.orders version" in text and "suite orders.suite.json" in text
    assert "readable from version 0" in text
    assert "each as exported" in text  # the evidence bundle, checked
    assert "gold.revenue_by_category_5m: verified" in text  # the chains, recomputed
    assert "bronze.orders: verified" in text
    # The walkthrough restored a version and then the latest: the contents are as before.
    after = DeltaTable(uri).to_pyarrow_table()
    assert compare(after, before.drop_columns(["updated_at"]), KEYS, TABLE, None).equal
