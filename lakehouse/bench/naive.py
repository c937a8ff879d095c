"""The pattern the field writes for data quality in a stream, against the project's silver.

The naive pattern, per micro-batch: parse the records against the contract, run the GX
suite over the batch with GX's own validator (``result_format`` COMPLETE with a row id
as ``unexpected_index_column_names``: one Spark job per expectation, each collecting its
unexpected row ids to the driver), turn those ids into a DataFrame, and split the batch
with joins: the failed rules joined onto the invalid rows, a left anti join for the
valid ones (``subtract`` would drop duplicate records).

The project's silver evaluates every rule as a compiled predicate in the parse's
projection, computes each expectation's result from that pass's counts (GX's formulas)
and deduplicates the valid records against silver: ``lakehouse.layers.routing.route``. The
comparison runs both over the same batches (the bronze version ranges silver's ledger
recorded), materialises both outputs of each without writing them (Spark's ``noop``
sink), and checks that both give every record exactly the same set of failed rules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.io.delta import read_appended
from lakehouse.layers.routing import SilverPlan, classify, for_routing, route
from lakehouse.quality.contract import RULES, failure_list, parse
from lakehouse.quality.gx import Validator

ROW = "_row"


def naive_split(plan: SilverPlan, validator: Validator, bronze: DataFrame
                ) -> tuple[DataFrame, DataFrame]:
    """(valid, invalid) records of a batch, the naive way; ``invalid`` has ``rules``
    (every failed rule, contract and suite). Both stand on the parsed batch, cached
    until the caller clears Spark's cache."""
    parsed = (plan.table.transform(parse(bronze, plan.contract, "ingested_at"))
              .withColumn(ROW, F.monotonically_increasing_id()).persist())
    unexpected = validator.unexpected_rows(parsed, ROW)
    spark = parsed.sparkSession
    bad = spark.createDataFrame([(row, f"expect.{rule}") for rule, rows in unexpected.items()
                                 for row in rows], f"{ROW} long, rule string")
    failed = bad.groupBy(ROW).agg(F.collect_set("rule").alias("_suite_failed"))
    with_rules = parsed.join(failed, ROW, "left").withColumn(
        "rules", F.array_union(failure_list(RULES),
                               F.coalesce("_suite_failed", F.array().cast("array<string>"))))
    invalid = with_rules.filter(F.size("rules") > 0)
    valid = parsed.join(bad.select(ROW).distinct(), ROW, "left_anti").filter(F.col(RULES).isNull())
    return valid, invalid


def mismatches(plan: SilverPlan, validator: Validator, bronze: DataFrame) -> int:
    """Records to which the naive split and the project's classification give different
    failed rules (or a different side); computed on the executors."""
    _, invalid = naive_split(plan, validator, bronze)
    coordinates = [F.col("topic").alias("t"), F.col("partition").alias("p"),
                   F.col("offset").alias("o")]
    naive = invalid.select(*coordinates, F.array_sort("rules").alias("rules"))
    project = (for_routing(classify(bronze, plan))
               .filter(F.size("failed_rules") > 0)
               .select(F.col("_topic").alias("t"), F.col("_partition").alias("p"),
                       F.col("_offset").alias("o"), F.array_sort("failed_rules").alias("rules")))
    return naive.exceptAll(project).count() + project.exceptAll(naive).count()


def _drain(df: DataFrame) -> None:
    """Compute every row of ``df`` without writing it anywhere."""
    df.write.format("noop").mode("overwrite").save()


def time_naive(plan: SilverPlan, validator: Validator, bronze: DataFrame) -> float:
    """Seconds the naive pattern takes to split one batch into its two outputs."""
    started = time.monotonic()
    valid, invalid = naive_split(plan, validator, bronze)
    _drain(valid)
    _drain(invalid)
    seconds = time.monotonic() - started
    valid.sparkSession.catalog.clearCache()
    return seconds


def time_project(plan: SilverPlan, bronze: DataFrame, batch_id: int) -> float:
    """Seconds the project's silver takes to route one batch (classify, count, judge
    each expectation, deduplicate against silver) into its two outputs."""
    started = time.monotonic()
    routed = route(plan, bronze, batch_id)
    try:
        _drain(routed.quarantine)
        _drain(routed.silver)
    finally:
        routed.release()
    return time.monotonic() - started


@dataclass(frozen=True)
class Comparison:
    """The naive pattern against the project's silver over the same batches."""

    batches: int
    records: int
    project_seconds: float
    naive_seconds: float
    mismatched_records: int

    @property
    def ratio(self) -> float:
        """How many times faster the project routes than the naive pattern."""
        return self.naive_seconds / self.project_seconds if self.project_seconds else 0.0


def compare(plan: SilverPlan, spark: SparkSession, ranges: list[tuple[int, int, int]]
            ) -> Comparison:
    """Run both over the batches ``(first version, last version, records)``: time each
    (alternating which goes first), then check their routing agrees record by record."""
    validator = Validator(plan.suite)
    project = naive = 0.0
    mismatched = 0
    for n, (first, last, _) in enumerate(ranges):
        batch = read_appended(spark, plan.bronze_uri, first, last)  # one batch of silver's
        if n % 2:
            naive += time_naive(plan, validator, batch)
            project += time_project(plan, batch, n)
        else:
            project += time_project(plan, batch, n)
            naive += time_naive(plan, validator, batch)
        mismatched += mismatches(plan, validator, batch)
        spark.catalog.clearCache()
    return Comparison(len(ranges), sum(r[2] for r in ranges), project, naive, mismatched)

