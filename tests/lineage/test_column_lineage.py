"""Column lineage traced from real Spark plans (the same tracer the pipelines use)."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.lineage.columns import plan_nodes, trace


def test_projection_filter_aggregate_and_rename(spark: SparkSession) -> None:
    rows = spark.createDataFrame([("a", "x", 1.5, "books")],
                                 "id string, kind string, amount double, category string")
    out = (rows.where(F.col("kind") == "placed")
           .withColumn("net", F.col("amount") * 2)
           .groupBy(F.col("category").alias("cat"))
           .agg(F.sum("net").alias("revenue"), F.count(F.lit(1)).alias("orders"),
                F.max("id").alias("last_id")))
    lineage = trace(plan_nodes(out))
    assert lineage.fields["cat"] == {"category": "IDENTITY"}
    assert lineage.fields["revenue"] == {"amount": "AGGREGATION"}
    assert lineage.fields["orders"] == {}  # count(1) reads no column
    assert lineage.fields["last_id"] == {"id": "AGGREGATION"}
    assert lineage.indirect["kind"] == frozenset({"FILTER"})
    assert lineage.indirect["category"] == frozenset({"GROUP_BY"})
    assert "amount" not in lineage.indirect


def test_union_explode_and_restriction(spark: SparkSession) -> None:
    a = spark.createDataFrame([("1", "p,q")], "id string, tags string")
    b = spark.createDataFrame([("2", "r")], "other string, labels string")
    both = a.union(b.select(F.upper("other"), "labels"))
    out = both.select("id", F.explode(F.split("tags", ",")).alias("tag"))
    lineage = trace(plan_nodes(out))
    assert lineage.fields["id"] == {"id": "IDENTITY", "other": "TRANSFORMATION"}
    assert lineage.fields["tag"] == {"tags": "TRANSFORMATION", "labels": "TRANSFORMATION"}
    only_a = lineage.restricted_to({"id", "tags"})
    assert only_a.fields["tag"] == {"tags": "TRANSFORMATION"}
