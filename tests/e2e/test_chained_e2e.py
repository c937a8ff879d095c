"""The chained shape end to end on a real broker: one query per source lands bronze, then
silver, then gold in each micro-batch; hard kills inside its silver and gold stages lose
and double nothing, and switching to the per-table shape and back resumes every table
where its own records say it stands."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.config import load_config
from lakehouse.graph import Layer, build
from lakehouse.layers.ledger import accounting
from tests.e2e.gold_world import BASE, DAY0, World, click, order
from tests.e2e.test_gold_e2e import assert_gold_exact

pytestmark = pytest.mark.integration


def shape(world: World, name: str) -> None:
    doc = yaml.safe_load(world.config.read_text())
    doc["streaming"]["shape"] = name
    world.config.write_text(yaml.safe_dump(doc))


def next_version(world: World, table: str) -> int:
    """The version a table's next commit gets: a chained stage's batch id is the first
    version of its input it reads."""
    return DeltaTable(str(world.warehouse / table)).version() + 1


def assert_accounted(world: World) -> None:
    pipeline = build(load_config(world.config))
    for query in pipeline.layer(Layer.SILVER):
        check = accounting(pipeline, query.definition)
        assert check.holds, check.describe()


def test_the_chained_shape_survives_kills_and_switches_shape(
        broker: str, tmp_path: Path, spark: SparkSession) -> None:
    world = World(broker, tmp_path)
    orders = [order(n, BASE - timedelta(minutes=n * 3 % 40)) for n in range(20)]
    clicks = [click(n, f"u{n % 5}", f"s{n % 6}", BASE + timedelta(seconds=20 * n))
              for n in range(20)]
    world.send([*orders, b"{broken", orders[3]], [*clicks, clicks[0]])
    shape(world, "tables")
    done = world.run_here(spark)  # a query per table: each has a checkpoint
    assert done.returncode == 0, done.stderr[-3000:]
    assert_accounted(world)

    # Chained from here. Killed inside the silver stage, after its silver and quarantine
    # commits, before its ledger line.
    shape(world, "chained")
    world.send([order(50, BASE), b"not json", order(51, BASE), orders[4]], [])
    crash = f"silver.orders:after_quarantine_commit:{next_version(world, 'bronze/orders')}"
    died = world.run(crash_at=crash)
    assert died.returncode != 0 and "crashing on purpose" in died.stderr, died.stderr[-2000:]
    checkpoints = world.warehouse / "_checkpoints"
    assert (checkpoints / "bronze.orders").is_dir()
    for driven in ("silver.orders", "gold.revenue_by_category_5m",
                   "gold.revenue_by_country_daily"):
        assert not (checkpoints / driven).exists()  # the chain removed it
    # Killed inside a two-stage gold table's stage, between its output and state commits,
    # while its sibling stage (active_users_1m) runs beside it; a late click moves session
    # z1 a day earlier. The next run catches both up though silver has nothing new.
    world.send([], [click(60, "z", "z1", DAY0 + timedelta(minutes=10)),
                    click(61, "z", "z1", DAY0 - timedelta(minutes=10))])
    crash = ("gold.sessions_daily:after_output_commit:"
             f"{next_version(world, 'silver/clickstream')}")
    died = world.run(crash_at=crash)
    assert died.returncode != 0 and "crashing on purpose" in died.stderr, died.stderr[-2000:]
    done = world.run_here(spark)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "started bronze.orders <- topic" in done.stdout
    assert "then silver.orders, gold.revenue_by_category_5m" in done.stdout
    assert_gold_exact(world, spark)
    assert_accounted(world)
    quarantine = DeltaTable(str(world.warehouse / "silver" / "orders_quarantine"))
    assert quarantine.to_pyarrow_table().num_rows == 2

    # A query per table again: each resumes where the chain left its table.
    shape(world, "tables")
    world.send([order(70, BASE), orders[5]], [click(80, "u1", "s1", BASE)])
    done = world.run_here(spark)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[silver.orders] no checkpoint but the ledger covers bronze" in done.stdout
    assert_gold_exact(world, spark)
    assert_accounted(world)
