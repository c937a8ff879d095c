"""Each gold definition on tiny frames, and the incremental engine against recomputation.

Real Spark and real Delta tables in a temporary warehouse; no broker (the end-to-end test
covers streaming from Kafka).
"""

from __future__ import annotations

import random
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    DateType,
    DecimalType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from lakehouse.aggregates import partial, recompute
from lakehouse.audit.verify import compare
from lakehouse.config import parse_config
from lakehouse.graph import build
from lakehouse.io.delta_log import BatchCommit
from lakehouse.layers.gold import GoldWriter, ensure_gold_tables, load_gold_plan, schemas
from lakehouse.registry import GoldTable, discover_gold

T0 = datetime(2026, 11, 20, 17, 58, 0, tzinfo=UTC)

ORDERS = StructType([
    StructField("event_id", StringType()), StructField("event_type", StringType()),
    StructField("event_time", TimestampType()), StructField("amount", DecimalType(12, 2)),
    StructField("category", StringType()), StructField("country", StringType()),
    StructField("event_date", DateType()), StructField("_commit_version", LongType()),
])
CLICKS = StructType([
    StructField("event_id", StringType()), StructField("user_id", StringType()),
    StructField("session_id", StringType()), StructField("event_time", TimestampType()),
    StructField("event_date", DateType()), StructField("_commit_version", LongType()),
])


def gold(name: str) -> GoldTable:
    return next(t for t in discover_gold() if t.name == name)


def order(i: int, kind: str, minutes: float, amount: str, category: str = "books",
          country: str = "DE") -> tuple[Any, ...]:
    ts = T0 + timedelta(minutes=minutes)
    return (f"o{i}", kind, ts, Decimal(amount), category, country, ts.date(), 1)


def click(i: int, user: str, session: str, seconds: float) -> tuple[Any, ...]:
    ts = T0 + timedelta(seconds=seconds)
    return (f"c{i}", user, session, ts, ts.date(), 1)


def rows(df: DataFrame, *keys: str) -> list[dict[str, Any]]:
    return sorted((r.asDict() for r in df.collect()), key=lambda r: tuple(str(r[k]) for k in keys))


def test_revenue_by_category_5m_windows_and_measures(spark: SparkSession) -> None:
    events = spark.createDataFrame([
        order(1, "order_placed", 0.5, "10.00"),             # 17:55-18:00 books
        order(2, "order_placed", 1.0, "20.50"),             # 17:55-18:00 books
        order(3, "order_refunded", 1.5, "5.25"),            # 17:55-18:00 books
        order(4, "order_paid", 1.9, "999.00"),              # not revenue: ignored
        order(5, "order_placed", 2.0, "7.00"),              # 18:00-18:05 (boundary) books
        order(6, "order_refunded", 3.0, "3.00", "文具"),     # 18:00-18:05 refunds only
    ], ORDERS)
    out = rows(recompute(gold("revenue_by_category_5m").build(), events),
               "window_start", "category")
    assert [(r["window_start"].astimezone(UTC).strftime("%H:%M"),
             r["window_end"].astimezone(UTC).strftime("%H:%M"), r["category"], r["orders"],
             r["revenue"], r["refunds"], r["net_revenue"], r["avg_order_value"]) for r in out] == [
        ("17:55", "18:00", "books", 2, Decimal("30.50"), Decimal("5.25"), Decimal("25.25"),
         Decimal("15.25")),
        ("18:00", "18:05", "books", 1, Decimal("7.00"), Decimal("0.00"), Decimal("7.00"),
         Decimal("7.00")),
        ("18:00", "18:05", "文具", 0, Decimal("0.00"), Decimal("3.00"), Decimal("-3.00"), None),
    ]


def test_revenue_by_country_daily_groups_by_utc_date(spark: SparkSession) -> None:
    events = spark.createDataFrame([
        order(1, "order_placed", 0, "1.10", country="DE"),
        order(2, "order_placed", 60 * 7, "2.20", country="DE"),   # next UTC day
        order(3, "order_placed", 1, "3.30", country="FR"),
        order(4, "order_placed", 2, "4.40", country="FR"),
    ], ORDERS)
    out = rows(recompute(gold("revenue_by_country_daily").build(), events),
               "event_date", "country")
    assert [(r["event_date"], r["country"], r["orders"], r["revenue"], r["avg_order_value"])
            for r in out] == [
        (date(2026, 11, 20), "DE", 1, Decimal("1.10"), Decimal("1.10")),
        (date(2026, 11, 20), "FR", 2, Decimal("7.70"), Decimal("3.85")),
        (date(2026, 11, 21), "DE", 1, Decimal("2.20"), Decimal("2.20")),
    ]


def test_active_users_1m_counts_distinct_users(spark: SparkSession) -> None:
    events = spark.createDataFrame([
        click(1, "u1", "s1", 5), click(2, "u1", "s1", 10), click(3, "u2", "s2", 59),
        click(4, "u1", "s1", 61), click(5, "u3", "s3", 70), click(6, "u3", "s3", 71),
    ], CLICKS)
    out = rows(recompute(gold("active_users_1m").build(), events), "window_start")
    assert [(r["window_start"].astimezone(UTC).strftime("%H:%M"), r["active_users"],
             r["events"]) for r in out] == [("17:58", 2, 3), ("17:59", 2, 3)]


def test_sessions_daily_median_and_start_date(spark: SparkSession) -> None:
    day2 = 6 * 3600 + 2 * 60  # seconds from T0 to the next UTC day
    events = spark.createDataFrame([
        click(1, "u1", "a", 0), click(2, "u1", "a", 30),            # 30 s
        click(3, "u2", "b", 100), click(4, "u2", "b", 110),         # 10 s
        click(5, "u2", "b", 190),                                   # -> 90 s, 3 events
        click(6, "u3", "c", 500),                                   # 0 s
        click(7, "u4", "d", day2 - 10), click(8, "u4", "d", day2 + 20),  # 30 s, starts day 1
        click(9, "u5", "e", day2 + 5),                              # day 2: 0 s
    ], CLICKS)
    out = rows(recompute(gold("sessions_daily").build(), events), "session_date")
    assert [(r["session_date"], r["sessions"], r["median_session_seconds"], r["events"],
             r["events_per_session"]) for r in out] == [
        (date(2026, 11, 20), 4, 30.0, 8, 2.0),   # lengths 30, 90, 0, 30 -> median 30
        (date(2026, 11, 21), 1, 0.0, 1, 1.0),
    ]


# -- the incremental engine: batch by batch == one recomputation ----------------------

def random_orders(rng: random.Random, n: int, first: int) -> list[tuple[Any, ...]]:
    kinds = ["order_placed", "order_placed", "order_refunded", "order_paid"]
    return [order(first + i, rng.choice(kinds), rng.uniform(-60 * 30, 60 * 2),
                  f"{rng.randint(1, 50000) / 100:.2f}", rng.choice(["a", "b", "ü", "文具"]),
                  rng.choice(["DE", "FR", "JP"])) for i in range(n)]


def random_clicks(rng: random.Random, n: int, first: int) -> list[tuple[Any, ...]]:
    out = []
    for i in range(n):
        user = f"u{rng.randint(1, 12)}"
        out.append(click(first + i, user, f"{user}-s{rng.randint(1, 3)}",
                         rng.uniform(-3600 * 30, 600)))
    return out


def writer_for(spark: SparkSession, table: GoldTable, silver: StructType,
               warehouse: Path) -> GoldWriter:
    config = parse_config({"project": "t", "kafka": {"bootstrap_servers": "127.0.0.1:1"},
                           "warehouse": {"root": str(warehouse)}})
    plan = load_gold_plan(build(config), table)
    sch = schemas(spark, plan.agg, silver)
    ensure_gold_tables(plan, sch)
    return GoldWriter(plan, sch, lambda _: None, table.qualified_name)


@pytest.mark.parametrize("name", ["revenue_by_category_5m", "revenue_by_country_daily",
                                  "active_users_1m", "sessions_daily"])
def test_incremental_merge_equals_recomputation(spark: SparkSession, tmp_path: Path,
                                                name: str) -> None:
    table = gold(name)
    is_orders = table.silver == "orders"
    schema = ORDERS if is_orders else CLICKS
    rng = random.Random(7)
    make = random_orders if is_orders else random_clicks
    # Out of order and late: every batch spans 30 hours of event time.
    batches = [make(rng, 60, 100 * b) for b in range(4)]
    if not is_orders:  # late events that move sessions to an earlier day
        batches[2].append(click(999, "u1", "u1-s1", -3600 * 40))
        batches[0].append(click(997, "solo", "solo-1", -3600 * 100))  # alone on its day
        batches[3].append(click(998, "solo", "solo-1", -3600 * 125))  # that day empties
    writer = writer_for(spark, table, schema, tmp_path)
    agg = writer.plan.agg
    seen: list[tuple[Any, ...]] = []
    for batch_id, batch in enumerate(batches):
        frame = spark.createDataFrame(batch, schema)
        part = partial(agg, frame)
        commit = BatchCommit(table.qualified_name, batch_id)
        writer.process(part, commit, len(batch), time.monotonic())
        if batch_id == 1:  # a replay of a committed batch changes nothing
            writer.process(part, commit, len(batch), time.monotonic())
        seen += batch
        expected = recompute(agg, spark.createDataFrame(seen, schema)).toArrow()
        streamed = DeltaTable(writer.plan.uri).to_pyarrow_table()
        check = compare(streamed, expected, agg.output_keys, table.qualified_name, None)
        assert check.equal, check.describe()
        assert check.rows == expected.num_rows > 0


def test_compare_reports_each_kind_of_difference(spark: SparkSession) -> None:
    import pyarrow as pa
    gold_rows = pa.table({"k": ["a", "b", "c"], "v": [1, 2, 3], "updated_at": [0, 0, 0]})
    expected = pa.table({"k": ["a", "b", "d"], "v": [1, 5, 4]})
    check = compare(gold_rows, expected, ["k"], "gold.t", 3)
    assert not check.equal
    assert check.only_in_gold == [{"k": "c", "v": 3}]
    assert check.only_in_recompute == [{"k": "d", "v": 4}]
    assert check.different == [({"k": "b", "v": 2}, {"k": "b", "v": 5})]
    assert "DIFFERS" in check.describe()
