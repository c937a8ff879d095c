"""Bronze's Spark step on tiny frames: records already held."""

from __future__ import annotations

from pyspark.sql import SparkSession

from lakehouse.layers.bronze import not_held


def test_not_held_drops_exactly_the_coordinates_bronze_has(spark: SparkSession) -> None:

    batch = spark.createDataFrame(
        [("t", 0, 5, "a"), ("t", 0, 6, "b"), ("t", 1, 5, "c"), ("t", 2, 7, "d"), ("u", 0, 6, "e")],
        "topic string, partition int, offset long, v string")
    bronze = spark.createDataFrame([("t", 0, 6, b"x"), ("t", 1, 6, b"y"), ("u", 1, 6, b"z")],
                                   "topic string, partition int, offset long, value binary")
    assert sorted(r.v for r in not_held(batch, bronze).collect()) == ["a", "c", "d", "e"]
    assert not_held(batch, bronze.limit(0)).count() == 5
