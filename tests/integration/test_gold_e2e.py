"""Gold end to end on a real broker: late and out-of-order events across several runs, a
hard kill between a two-stage table's commits, a lost checkpoint. After every run each
gold table equals (a) an oracle computed here in plain Python from the events produced
and (b) the engine's own batch recomputation from silver (``verify``)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.config import load_config
from lakehouse.generator import Record
from lakehouse.gold import verify
from lakehouse.io.kafka_admin import TopicSpec, ensure_topics
from lakehouse.io.kafka_producer import produce
from lakehouse.registry import discover_gold
from tests.conftest import ROOT, write_config

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
BASE = NOW - timedelta(minutes=20)
DAY0 = datetime.combine((NOW - timedelta(days=3)).date(), datetime.min.time(), UTC)
KINDS = ("order_placed", "order_placed", "order_refunded", "order_paid")
CATEGORIES = ("books", "文具", "café & küche")


def iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order(n: int, at: datetime, kind: str | None = None, amount: str | None = None
          ) -> dict[str, Any]:
    return {"event_id": f"o-{n}", "event_type": kind or KINDS[n % 4], "order_id": f"ord-{n}",
            "customer_id": f"c-{n % 5}", "event_time": iso(at),
            "amount": float(amount or f"{5 + n * 1.37:.2f}"), "currency": "EUR",
            "quantity": 1, "category": CATEGORIES[n % 3], "country": ("DE", "FR", "JP")[n % 3]}


def click(n: int, user: str, session: str, at: datetime) -> dict[str, Any]:
    return {"event_id": f"k-{n}", "event_type": "page_view", "user_id": user,
            "session_id": session, "url": "https://shop.example.com/", "event_time": iso(at)}


class World:
    """The broker topics, config and warehouse of this module, and what was produced."""

    def __init__(self, broker: str, root: Path) -> None:
        self.broker = broker
        self.warehouse = root / "warehouse"
        self.config = write_config(root / "conf.yaml", broker, self.warehouse)
        suffix = root.name
        text = self.config.read_text()
        self.config.write_text(text.replace("shop.orders.v1", f"orders.{suffix}")
                               .replace("web.clickstream.v1", f"clicks.{suffix}"))
        ensure_topics(broker, [TopicSpec(f"orders.{suffix}", 3), TopicSpec(f"clicks.{suffix}", 2)])
        self.topics = {"orders": f"orders.{suffix}", "clickstream": f"clicks.{suffix}"}
        self.orders: dict[str, dict[str, Any]] = {}
        self.clicks: dict[str, dict[str, Any]] = {}

    def send(self, orders: list[Any], clicks: list[Any]) -> None:
        for source, events, valid in (("orders", orders, self.orders),
                                      ("clickstream", clicks, self.clicks)):
            records = [Record(b"k", e if isinstance(e, bytes) else json.dumps(e).encode(), ())
                       for e in events]
            assert produce(self.broker, self.topics[source], records) == len(records)
            for e in events:
                if isinstance(e, dict):
                    valid.setdefault(e["event_id"], e)

    def run(self, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("LAKEHOUSE_CRASH_AT", None)
        if crash_at:
            env["LAKEHOUSE_CRASH_AT"] = crash_at
        return subprocess.run([sys.executable, "-m", "lakehouse.cli", "--conf", str(self.config),
                                *(args or ("run", "--until-idle"))], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=600,
                               start_new_session=True)

    def gold(self, name: str) -> list[dict[str, Any]]:
        return DeltaTable(str(self.warehouse / "gold" / name)).to_pyarrow_table().to_pylist()

    def next_batch(self, query: str) -> int:
        commits = self.warehouse / "_checkpoints" / query / "commits"
        return max(int(p.name) for p in commits.iterdir() if p.name.isdigit()) + 1


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
    config = load_config(world.config)
    for table in discover_gold():
        check = verify(spark, config, table)
        assert check.equal, check.describe()


@pytest.fixture(scope="module")
def world(broker: str, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Two runs: the second brings out-of-order events, events hours late into windows
    gold already holds, a session growing longer, and a redelivery."""
    w = World(broker, tmp_path_factory.mktemp("gold"))
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
    done = w.run()
    assert done.returncode == 0, done.stderr[-3000:]
    return w


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
    done = world.run()
    assert done.returncode == 0, done.stderr[-3000:]
    dates = {r["session_date"] for r in world.gold("sessions_daily")}
    assert day0 not in dates and day0 - timedelta(days=1) in dates
    assert_gold_exact(world, spark)

    # A deleted checkpoint: the table's commits say which silver versions it holds.
    shutil.rmtree(world.warehouse / "_checkpoints" / "gold.revenue_by_category_5m")
    world.send([order(500, BASE - timedelta(minutes=1), "order_placed")], [])
    done = world.run()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "continuing from version" in done.stdout
    assert_gold_exact(world, spark)

    again = world.run("verify", "gold")
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("equal the recomputation from silver") == 4


def test_analyst_notebook_executes(world: World) -> None:
    import nbformat
    from nbclient import NotebookClient
    notebook = nbformat.read(ROOT / "notebooks" / "analyst_revenue.ipynb", as_version=4)
    os.environ["LAKEHOUSE_CONF"] = str(world.config)
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        os.environ.pop("LAKEHOUSE_CONF")
    outputs = [o for cell in notebook.cells if cell.cell_type == "code"
               for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # revenue over time, revenue by country
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "")
                   for o in outputs)
    assert "books" in text and "文具" in text
