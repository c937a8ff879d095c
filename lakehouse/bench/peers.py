"""The designs a user writes without this project, measured in the same run as its peers.

- *bare bronze*: ``readStream.format("kafka")`` straight into ``writeStream.format("delta")``
  over the same backlog, nothing else;
- *bare parse*: the same bronze rows through ``from_json`` with the contract's read schema
  and the contract's and the suite's predicates into Spark's ``noop`` sink: the floor
  under silver's routing;
- *bare chained*: one ``foreachBatch`` doing a plain append to bronze, an insert-only
  MERGE on the key into silver and a MERGE of a daily count into gold, under the same
  steady load as the project's freshness run; each record's produce -> gold delay is its
  batch's gold commit time minus its Kafka timestamp, computed by Spark over the peer's
  silver table (only the percentiles reach the driver).

Each peer writes to tables of its own under the bench's work directory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.bench.limit import Rate
from lakehouse.bench.report import percentiles
from lakehouse.io.delta import read_table
from lakehouse.io.storage import join
from lakehouse.layers.routing import SilverPlan
from lakehouse.quality.rules import rule_failure


def bare_bronze(spark: SparkSession, kafka: dict[str, str], work: str) -> Rate:
    """The backlog from Kafka into a Delta table by Spark alone (``availableNow``)."""
    started = time.monotonic()
    query = (spark.readStream.format("kafka").options(**kafka).load()
             .writeStream.format("delta")
             .option("checkpointLocation", join(work, "_checkpoints", "bare_bronze"))
             .trigger(availableNow=True).start(join(work, "bare_bronze")))
    query.awaitTermination()
    seconds = time.monotonic() - started
    return Rate(read_table(spark, join(work, "bare_bronze")).count(), seconds)


def contract_checks(plan: SilverPlan) -> list[Column]:
    """The contract's required fields and the suite's rules as "fails" predicates over
    the fields read by ``from_json`` (timestamps as text, cast)."""
    required = [F.col(f.name).isNull() for f in plan.contract.fields if f.required]
    return required + [rule_failure(rule)[0] for rule in plan.suite.rules]


def _read(plan: SilverPlan) -> Column:
    """The record's value parsed with the contract's read schema, a struct."""
    schema = T.StructType([T.StructField(f.name, f.read_type) for f in plan.contract.fields])
    return F.from_json(F.col("value").cast("string"), schema).alias("r")


def bare_parse(spark: SparkSession, plan: SilverPlan) -> Rate:
    """Bronze's rows parsed and checked into the ``noop`` sink: the floor for silver."""
    contract = plan.contract
    bronze = read_table(spark, plan.bronze_uri)
    parsed = bronze.select(_read(plan)).select(
        *[F.col(f"r.{f.name}").try_cast(f.spark_type).alias(f.name) for f in contract.fields])
    fails = reduce(lambda a, b: a | b, [F.coalesce(c, F.lit(False))
                                        for c in contract_checks(plan)])
    started = time.monotonic()
    parsed.withColumn("_rejected", fails).write.format("noop").mode("overwrite").save()
    seconds = time.monotonic() - started
    return Rate(bronze.count(), seconds)


@dataclass
class _Chained:
    """The bare chained peer's foreachBatch: append, insert-only MERGE, daily MERGE."""

    plan: SilverPlan
    work: str
    commits: dict[int, float] = field(default_factory=dict)
    """Batch id -> when its gold MERGE committed (epoch seconds)."""
    seconds: list[float] = field(default_factory=list)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        from delta.tables import DeltaTable
        started = time.monotonic()
        spark = batch.sparkSession
        contract = self.plan.contract
        key = contract.key
        batch.persist()
        try:
            batch.write.format("delta").mode("append").save(join(self.work, "bronze"))
            rows = (batch.select(_read(self.plan), F.col("timestamp").alias("_kafka_timestamp"))
                    .select(F.col(f"r.{key}").alias(key),
                            F.to_date(F.col(f"r.{contract.event_time}")).alias("day"),
                            "_kafka_timestamp", F.lit(batch_id).alias("_batch"))
                    .filter(F.col(key).isNotNull()).dropDuplicates([key]))
            silver, gold = join(self.work, "silver"), join(self.work, "gold")
            if not DeltaTable.isDeltaTable(spark, silver):
                rows.limit(0).write.format("delta").save(silver)
                rows.groupBy("day").count().limit(0).write.format("delta").save(gold)
            (DeltaTable.forPath(spark, silver).alias("t")
             .merge(rows.alias("s"), f"t.{key} = s.{key}").whenNotMatchedInsertAll().execute())
            daily = rows.groupBy("day").count()
            (DeltaTable.forPath(spark, gold).alias("t").merge(daily.alias("s"), "t.day <=> s.day")
             .whenMatchedUpdate(set={"count": "t.count + s.count"})
             .whenNotMatchedInsertAll().execute())
            self.commits[batch_id] = time.time()
        finally:
            batch.unpersist()
        self.seconds.append(time.monotonic() - started)


def bare_chained(spark: SparkSession, kafka: dict[str, str], plan: SilverPlan, work: str,
                 trigger_seconds: float, load: Callable[[], Any]) -> dict[str, Any]:
    """Run the bare chained design from the topic's end while ``load`` produces; the
    per-batch seconds and each record's produce -> gold delay."""
    chained = _Chained(plan, work)
    options = {**kafka, "startingOffsets": "latest"}
    query = (spark.readStream.format("kafka").options(**options).load()
             .writeStream.foreachBatch(chained)
             .option("checkpointLocation", join(work, "_checkpoints", "bare_chained"))
             .trigger(processingTime=f"{trigger_seconds} seconds").start())
    try:
        while query.status["message"] == "Initializing sources" and query.isActive:
            time.sleep(0.1)
        thread = threading.Thread(target=load, name="bench-bare-load")
        thread.start()
        thread.join()
        query.processAllAvailable()
    finally:
        query.stop()
    if not chained.commits:
        return {"batches": 0, "batch_s": 0.0, "produce_to_gold_s": {}}
    committed = spark.createDataFrame(list(chained.commits.items()),
                                      "_batch long, committed double")
    delays = (read_table(spark, join(work, "silver")).join(committed, "_batch")
              .select((F.col("committed") - F.col("_kafka_timestamp").cast("double"))
                      .alias("delay")))
    marks = delays.agg(F.percentile_approx("delay", [0.5, 0.95, 0.99], 10_000).alias("p"),
                       F.max("delay").alias("max"), F.count(F.lit(1)).alias("n")).first()
    assert marks is not None
    figures = dict(zip(("p50", "p95", "p99"), marks["p"] or [], strict=False))
    figures["max"] = marks["max"]
    return {"batches": len(chained.seconds), "records": int(marks["n"]),
            "batch_s": percentiles(chained.seconds).get("p50", 0.0),
            "produce_to_gold_s": figures}
