"""Gold end to end on a real broker: late and out-of-order events across several runs, a
hard kill between a two-stage table's commits, a lost checkpoint. After every run each
gold table equals (a) an oracle computed here in plain Python from the events produced
and (b) the engine's own batch recomputation from silver (``verify``)."""

from __future__ import annotations

import shutil
import statistics
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pyspark.sql import SparkSession

from tests.conftest import assert_gold_verified
from tests.e2e.gold_world import BASE, DAY0, NOW, World, click, order

pytestmark = pytest.mark.integration


# -- the oracle: plain Python over the events produced ----------------------------------

def ts(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["event_time"].replace("Z", "+00:00"))


def expected_revenue(orders: dict[str, dict[str, Any]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    acc: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
    for e in orders.values():
        if e["event_type"] not in ("order_placed", "order_refunded"):
            continue
        t = ts(e)
        start = t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0)
        row = acc[(start, e["category"])]
        amount = Decimal(str(e["amount"])).quantize(Decimal("0.01"))
        if e["event_type"] == "order_placed":
            row[0] += 1
            row[1] += amount
        else:
            row[2] += amount
    return {k: (n, rev, ref, rev - ref) for k, (n, rev, ref) in acc.items()}


def expected_active_users(clicks: dict[str, dict[str, Any]]) -> dict[Any, tuple[int, int]]:
    users: dict[datetime, set[str]] = defaultdict(set)
    events: dict[datetime, int] = defaultdict(int)
    for e in clicks.values():
        minute = ts(e).replace(second=0, microsecond=0)
        users[minute].add(e["user_id"])
        events[minute] += 1
    return {m: (len(users[m]), events[m]) for m in users}


def expected_sessions(clicks: dict[str, dict[str, Any]]) -> dict[Any, tuple[Any, ...]]:
    spans: dict[str, list[datetime]] = defaultdict(list)
    for e in clicks.values():
        spans[e["session_id"]].append(ts(e))
    days: dict[Any, list[tuple[float, int]]] = defaultdict(list)
    for times in spans.values():
        days[min(times).date()].append(((max(times) - min(times)).total_seconds(), len(times)))
    return {d: (len(s), statistics.median(x for x, _ in s), sum(n for _, n in s),
                round(sum(n for _, n in s) / len(s), 2)) for d, s in days.items()}


def assert_gold_exact(world: World, spark: SparkSession) -> None:
    revenue = {(r["window_start"], r["category"]): (r["orders"], r["revenue"], r["refunds"],
                                                     r["net_revenue"])
               for r in world.gold("revenue_by_category_5m")}
    assert revenue == expected_revenue(world.orders)
    active = {r["window_start"]: (r["active_users"], r["events"])
              for r in world.gold("active_users_1m")}
    assert active == expected_active_users(world.clicks)
    sessions = {r["session_date"]: (r["sessions"], r["median_session_seconds"], r["events"],
                                    r["events_per_session"]) for r in world.gold("sessions_daily")}
    assert sessions == expected_sessions(world.clicks)
    by_country = world.gold("revenue_by_country_daily")
    assert sum(r["orders"] for r in by_country) == sum(n for n, *_ in expected_revenue(
        world.orders).values())
    assert_gold_verified(world.config, spark)


def test_gold_is_exact_with_late_and_out_of_order_events(world: World,
                                                         spark: SparkSession) -> None:
    assert "gold.revenue_by_category_5m" in world.first_run_stdout  # type: ignore[attr-defined]
    assert_gold_exact(world, spark)
    # The windows five hours back were updated in place by the late events of run 2.
    before = world.late_window_before  # type: ignore[attr-defined]
    after = {(r["window_start"], r["category"]): r for r in world.gold("revenue_by_category_5m")
             if r["window_start"] <= NOW - timedelta(hours=4)}
    assert before and set(before) <= set(after)
    assert sum(r["orders"] for r in after.values()) == \
        sum(r["orders"] for r in before.values()) + 2
    assert all(after[k]["updated_at"] > before[k]["updated_at"] for k in before)
    assert len(before) == 3


def test_gold_stays_exact_after_a_kill_and_a_lost_checkpoint(world: World,
                                                             spark: SparkSession) -> None:
    # A late click moves session z1 a day earlier: its old day must disappear from gold.
    day0 = DAY0.date()
    assert day0 in {r["session_date"] for r in world.gold("sessions_daily")}
    world.send([order(400, BASE)], [click(950, "z", "z1", DAY0 - timedelta(minutes=10))])
    crash = f"gold.sessions_daily:after_output_commit:{world.next_batch('gold.sessions_daily')}"
    died = world.run(crash_at=crash)
    assert died.returncode != 0 and "crashing on purpose" in died.stderr, died.stderr[-2000:]
    # The restart (as the catch-up runs below) on the warm session: the killed process
    # left its commits and checkpoints behind, which is what the restart resumes from.
    done = world.run_here(spark, lineage=False)
    assert done.returncode == 0, done.stderr[-3000:]
    dates = {r["session_date"] for r in world.gold("sessions_daily")}
    assert day0 not in dates and day0 - timedelta(days=1) in dates
    assert_gold_exact(world, spark)

    # A deleted checkpoint: the table's commits say which silver versions it holds.
    shutil.rmtree(world.warehouse / "_checkpoints" / "gold.revenue_by_category_5m")
    world.send([order(500, BASE - timedelta(minutes=1), "order_placed")], [])
    done = world.run_here(spark, lineage=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "continuing from version" in done.stdout
    assert_gold_exact(world, spark)

    again = world.run("verify", "gold")
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("equal the recomputation from silver") == 4


def test_analyst_notebook_executes(world: World) -> None:
    outputs, text = world.notebook("analyst_revenue.ipynb")
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # revenue over time, revenue by country
    assert "books" in text and "文具" in text
