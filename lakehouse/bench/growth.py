"""Does a micro-batch cost more as the tables grow? Silver and gold batch times measured
with 1M, 5M and 20M rows already in silver (quick: fewer).

The grown silver table is built directly with Spark, not through the stream: the bench's
silver rows copied under new event ids, their event times moved back by 0..29 days (the
dates spread over a month, as real data's are), partitioned by event date as silver is.
At each size one batch of bronze records silver has never seen goes through the
project's own path (``route`` then ``commit_change``: dedup against silver, the append, the
side tables), then the gold table built from that silver (``recompute``) takes the rows
the batch inserted through its writer. The steps of each (``lakehouse.steps``)
say where the time went.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import steps
from lakehouse.aggregates import UPDATED_AT, recompute
from lakehouse.batch import BatchRun
from lakehouse.io.delta import VERSION_COLUMN, ensure_table, read_appended, read_table, replace
from lakehouse.io.delta_log import BatchCommit, latest_version
from lakehouse.io.storage import join
from lakehouse.layers.gold import GoldPlan, gold_writer
from lakehouse.layers.routing import SilverPlan, route
from lakehouse.layers.silver import commit_change, ensure_tables, stream_change
from lakehouse.printing import Printer

DAYS = 30


def grown(base: DataFrame, plan: SilverPlan, rows: int) -> DataFrame:
    """``rows`` silver rows made from ``base``'s: copy ``k`` of each has the event id
    ``<id>#<k>`` and its event time 0 to 29 days earlier (by a hash of the new id), so
    the dates spread over a month however few copies there are (pure)."""
    have = base.count()
    copies = max(1, -(-rows // have))
    key, when = plan.contract.key, plan.contract.event_time
    shift = F.make_dt_interval(days=F.pmod(F.hash(F.col(key), F.col("_k")), F.lit(DAYS)))
    return (base.crossJoin(base.sparkSession.range(1, copies + 1).withColumnRenamed("id", "_k"))
            .withColumn(key, F.concat(F.col(key), F.lit("#"), F.col("_k").cast("string")))
            .withColumn(when, F.col(when) - shift)
            .withColumn("event_date", F.to_date(F.col(when)))
            .drop("_k").limit(rows))


def bronze_slice(spark: SparkSession, plan: SilverPlan, n: int, records: int) -> DataFrame:
    """The ``n``-th slice of about ``records`` bronze records (by offset in each Kafka
    partition), as a silver batch reads them (with a commit version)."""
    bronze = read_table(spark, plan.bronze_uri)
    partitions = max(1, bronze.select("partition").distinct().count())
    width = max(1, records // partitions)
    return (bronze.filter(F.col("offset").between(n * width, (n + 1) * width - 1))
            .withColumn(VERSION_COLUMN, F.lit(n).cast("long")))


def measure(spark: SparkSession, plan: SilverPlan, gold: GoldPlan, sizes: Sequence[int],
            records: int, work: str, say: Printer) -> list[dict[str, Any]]:
    """Per size: rows in silver, the silver batch's seconds and steps, the gold table's
    rows and its batch's seconds and steps."""
    base = read_table(spark, plan.uri)
    silver_uri = join(work, "silver")
    grown_plan = dataclasses.replace(
        plan, uri=silver_uri, quarantine_uri=join(work, "quarantine"),
        quality_uri=join(work, "_quality"), ledger_uri=join(work, "_batches"))
    grown_gold = dataclasses.replace(gold, uri=join(work, "gold"), state_uri=None,
                                     silver_uri=silver_uri)
    out = []
    for n, size in enumerate(sizes):
        t0 = time.monotonic()
        build, rows = BatchCommit("bench:growth:build", n), grown(base, plan, size)
        ensure_table(silver_uri, rows.schema, ("event_date",), change_feed=True,
                     storage_options=plan.storage_options)
        replace(rows, silver_uri, build, None, ("event_date",))
        ensure_tables(grown_plan, read_table(spark, silver_uri).schema)
        table = recompute(gold.agg, read_table(spark, silver_uri))
        replace(table.withColumn(UPDATED_AT, F.current_timestamp()), grown_gold.uri, build)
        built = time.monotonic() - t0
        gold_rows = read_table(spark, grown_gold.uri).count()
        silver_s, silver_steps = _silver_batch(spark, grown_plan, n, records)
        gold_s, gold_steps = _gold_batch(spark, grown_gold)
        say(f"    growth: {size:,} rows in silver (built in {built:.0f}s): silver batch "
            f"{silver_s:.1f}s, gold batch {gold_s:.1f}s ({gold_rows:,} rows in gold)")
        out.append({"silver_rows": size, "silver_s": silver_s, "silver_steps": silver_steps,
                    "gold_rows": gold_rows, "gold_s": gold_s, "gold_steps": gold_steps,
                    "build_s": built})
    return out


def _silver_batch(spark: SparkSession, plan: SilverPlan, n: int, records: int
                  ) -> tuple[float, dict[str, float]]:
    batch = bronze_slice(spark, plan, n, records)
    columns = read_table(spark, plan.uri).schema
    with steps.collecting() as taken:
        started = time.monotonic()
        routed = route(plan, batch, n)
        try:
            commit = BatchCommit("bench:growth", n, {"lakehouse.query": "bench growth"})
            commit_change(plan, stream_change(plan, routed, commit, started, columns))
        finally:
            routed.release()
        seconds = time.monotonic() - started
    return seconds, taken


def _gold_batch(spark: SparkSession, plan: GoldPlan) -> tuple[float, dict[str, float]]:
    last = latest_version(plan.silver_uri)
    assert last is not None
    changes = read_appended(spark, plan.silver_uri, last, last)
    writer, _ = gold_writer(spark, plan, lambda _: None, changes)
    with steps.collecting() as taken:
        started = time.monotonic()
        writer(changes, BatchRun("bench", "bench", last, "bench:growth"))
        seconds = time.monotonic() - started
    return seconds, taken
