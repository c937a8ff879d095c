"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from tests.e2e.gold_world import BASE, DAY0, NOW, World, click, order


@pytest.fixture(scope="package")
def world(broker: str, tmp_path_factory: pytest.TempPathFactory, spark: SparkSession) -> World:
    """Two runs: the second brings out-of-order events, events hours late into windows
    gold already holds, a session growing longer, and a redelivery. The first is the
    command's own process (its output and the Spark listener's lineage are checked); the
    second runs on the suite's warm Spark session (a cold JVM costs ~30 s a run)."""
    # A query per table: these tests kill and reset one gold table's own query
    # (tests/e2e/test_chained_e2e.py does the same in the default, chained shape).
    w = World(broker, tmp_path_factory.mktemp("gold"), shape="tables")
    orders1 = [order(n, BASE - timedelta(minutes=n * 3 % 40)) for n in range(30)]
    late1 = [order(100 + n, NOW - timedelta(hours=5, minutes=n), "order_placed")
             for n in range(3)]
    clicks1 = [click(n, f"u{n % 7}", f"s{n % 9}", BASE + timedelta(seconds=20 * n))
               for n in range(40)]
    alone = [click(900, "z", "z1", DAY0 + timedelta(minutes=10)),
             click(901, "z", "z1", DAY0 + timedelta(minutes=20))]
    w.send(orders1 + late1 + [b"{broken", orders1[4]], clicks1 + alone + [clicks1[0]])
    done = w.run()
    assert done.returncode == 0, done.stderr[-3000:]
    w.first_run_stdout = done.stdout  # type: ignore[attr-defined]
    w.first_run_stderr = done.stderr  # type: ignore[attr-defined]
    # The version analysts saw after run 1 (run 2 changes it): explain must rebuild it.
    w.revenue_version_after_run1 = DeltaTable(  # type: ignore[attr-defined]
        str(w.warehouse / "gold" / "revenue_by_category_5m")).version()
    w.late_window_before = {  # type: ignore[attr-defined]
        (r["window_start"], r["category"]): r for r in w.gold("revenue_by_category_5m")
        if r["window_start"] <= NOW - timedelta(hours=4)}

    orders2 = [order(200 + n, BASE - timedelta(minutes=n * 7 % 40)) for n in range(12)]
    late2 = [{**order(300 + n, NOW - timedelta(hours=5, minutes=n), kind),
              "category": late1[n]["category"]}  # into the rows run 1 created
             for n, kind in enumerate(("order_placed", "order_refunded", "order_placed"))]
    clicks2 = [click(200 + n, f"u{n % 11}", f"s{n % 13}", BASE - timedelta(seconds=30 * n))
               for n in range(30)]
    w.send(orders2 + late2 + [orders1[0]], clicks2)
    done = w.run_here(spark, lineage=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return w
