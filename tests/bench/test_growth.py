"""The benchmark's grown silver: as many rows as asked, each event id once, event dates
spread over a month; and the bare parse peer rejects what the contract rejects."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.bench.growth import DAYS, grown
from lakehouse.bench.peers import contract_checks
from lakehouse.layers.routing import classify, for_routing
from tests.bench.test_naive import bronze_batch, plan


def test_grown_silver_has_the_rows_asked_for_over_a_month(spark: SparkSession,
                                                          tmp_path: Path) -> None:
    p = plan(tmp_path)
    base = (for_routing(classify(bronze_batch(spark, 200), p))
            .filter(F.size("failed_rules") == 0).drop("failed_rules", "reasons")
            .dropDuplicates([p.contract.key]))  # as silver holds them
    rows = grown(base, p, 2_000)
    figures = rows.agg(F.count(F.lit(1)).alias("n"),
                       F.count_distinct(p.contract.key).alias("keys"),
                       F.count_distinct("event_date").alias("dates")).first()
    assert figures is not None
    assert figures["n"] == figures["keys"] == 2_000
    assert figures["dates"] >= DAYS - 1  # the base's events straddle at most one midnight
    assert rows.filter(F.to_date(p.contract.event_time) != F.col("event_date")).count() == 0


def test_the_bare_parse_checks_reject_what_the_contract_requires(spark: SparkSession,
                                                                 tmp_path: Path) -> None:
    p = plan(tmp_path)
    checks = contract_checks(p)
    required = [f for f in p.contract.fields if f.required]
    assert len(checks) == len(required) + len(p.suite.rules)
    empty = spark.createDataFrame([(None,) * len(p.contract.fields)],
                                  ", ".join(f"{f.name} string" for f in p.contract.fields))
    first = empty.select(checks[0].alias("fails")).first()
    assert first is not None and first["fails"] is True  # a missing required field fails


def test_the_bare_parse_peer_runs_over_every_kind_of_fault(spark: SparkSession,
                                                           tmp_path: Path) -> None:
    from lakehouse.bench.peers import bare_parse
    from tests.bench.test_naive import bronze_batch
    p = plan(tmp_path)
    bronze = bronze_batch(spark, 400)
    wrong_type = bronze.filter(F.col("value").cast("string").rlike('"event_time": *[0-9]'))
    assert wrong_type.count() > 0, "the faults include an event time of the wrong type"
    bronze.drop("_commit_version").write.format("delta").save(p.bronze_uri)
    assert bare_parse(spark, p).records == 400
