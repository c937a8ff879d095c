"""A damaged checkpoint stops the run before Spark with the way out; after
``lakehouse checkpoint reset`` the table resumes from its own commits: nothing lost, nothing
twice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from tests.conftest import assert_gold_verified, lakehouse
from tests.e2e.gold_world import BASE, World, order

pytestmark = pytest.mark.integration


def test_a_damaged_checkpoint_names_the_reset_and_the_reset_loses_nothing(
        broker: str, tmp_path: Path, spark: SparkSession) -> None:
    w = World(broker, tmp_path, shape="tables")  # silver's and gold's own checkpoints
    first = [order(n, BASE) for n in range(20)]
    w.send(first, [])
    assert w.run_here(spark).returncode == 0
    offsets = w.warehouse / "_checkpoints" / "silver.orders" / "offsets"
    newest = max(int(p.name) for p in offsets.iterdir() if p.name.isdigit())
    (offsets / str(newest)).write_text("")  # e.g. a disk that filled up mid-write

    w.send([order(n, BASE) for n in range(20, 30)] + [first[3]], [])  # new, and a redelivery
    refused = w.run()
    assert refused.returncode == 2
    assert "LH-STREAM-003" in refused.stderr and f"offsets/{newest} is empty" in refused.stderr
    assert "lakehouse checkpoint reset silver.orders" in refused.stderr
    assert "starting Spark" not in refused.stdout

    reset = lakehouse(w.config, "checkpoint", "reset", "silver.orders", "--yes")
    assert reset.returncode == 0, reset.stderr[-3000:]
    assert "moved to" in reset.stdout and "its ledger" in reset.stdout
    assert not (w.warehouse / "_checkpoints" / "silver.orders").exists()
    # A gold query killed before it planned its first batch leaves a checkpoint without
    # progress: its folders and a temporary file (Spark refuses to start a query on it).
    unstarted = w.warehouse / "_checkpoints" / "gold.revenue_by_category_5m"
    shutil.rmtree(unstarted)
    (unstarted / "offsets").mkdir(parents=True)
    (unstarted / "commits").mkdir()
    (unstarted / "metadata").write_text('{"id":"8c3c1f0e-0000-4000-8000-000000000000"}')
    (unstarted / "offsets" / ".0.5d1f2b7e.tmp").write_text("v1\n")

    done = w.run_here(spark)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[gold.revenue_by_category_5m] removed a checkpoint without progress" in done.stdout
    ids = DeltaTable(str(w.warehouse / "silver" / "orders")).to_pyarrow_table(
        columns=["event_id"]).column("event_id").to_pylist()
    assert sorted(ids) == sorted(w.orders)  # every order once: none lost, none twice
    assert_gold_verified(w.config, spark)
