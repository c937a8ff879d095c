"""The naive GX pattern the benchmark compares silver with routes exactly as silver does
(and the comparison would notice if it did not)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.bench.naive import mismatches, naive_split
from lakehouse.config import load_config
from lakehouse.generator import generate
from lakehouse.graph import build
from lakehouse.landing import land
from lakehouse.layers.routing import SilverPlan, load_plan
from lakehouse.quality.gx import Validator
from tests.conftest import write_config
from tests.shapes import shape

RAW = ("key binary, value binary, topic string, partition int, offset long, "
       "timestamp timestamp, timestampType int, "
       "headers array<struct<key:string,value:binary>>")


def bronze_batch(spark: SparkSession, count: int) -> DataFrame:
    """Generated orders with faults, landed by bronze.orders, as silver's stream reads
    them (with their bronze version)."""
    now = datetime.now(UTC)
    rows = [(r.key, r.value, "orders", n % 3, n, now, 0, [(k, v) for k, v in r.headers])
            for n, r in enumerate(generate(shape("orders"), count, seed=3, faults=0.3))]
    raw = spark.createDataFrame(rows, RAW)
    return land(raw).withColumn("_commit_version", F.lit(1).cast("long"))


def plan(tmp_path: Path) -> SilverPlan:
    config = load_config(str(write_config(tmp_path / "conf.yaml", "127.0.0.1:1",
                                          tmp_path / "wh")))
    pipeline = build(config)
    return load_plan(pipeline, pipeline.query("silver.orders").definition)


def test_the_naive_split_routes_every_record_as_silver_does(
        spark: SparkSession, tmp_path: Path) -> None:
    p = plan(tmp_path)
    batch = bronze_batch(spark, 600).persist()
    validator = Validator(p.suite)
    valid, invalid = naive_split(p, validator, batch)
    assert valid.count() + invalid.count() == 600
    # GX (not the contract) rejected some of them
    assert invalid.filter(F.exists("rules", lambda r: r.startswith("expect."))).count() > 0
    assert mismatches(p, validator, batch) == 0
    spark.catalog.clearCache()


def test_a_record_routed_differently_is_counted(spark: SparkSession, tmp_path: Path) -> None:
    p = plan(tmp_path)
    batch = bronze_batch(spark, 200)

    class Lenient(Validator):
        """GX that never finds an unexpected row: the naive split lets bad records pass."""

        def unexpected_rows(self, frame: DataFrame, index_column: str) -> dict[str, set]:
            return {}

    assert mismatches(p, Lenient(p.suite), batch) > 0
