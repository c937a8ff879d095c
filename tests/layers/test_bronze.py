"""Bronze's Spark steps on tiny frames: offset ranges of a batch, records already held."""

from __future__ import annotations

from pyspark.sql import SparkSession

from lakehouse.runner import not_held, offset_ranges


def test_offset_ranges_per_partition_end_exclusive(spark: SparkSession) -> None:
    batch = spark.createDataFrame([("t", 1, 7), ("t", 0, 5), ("t", 0, 6), ("t", 1, 9)],
                                  "topic string, partition int, offset long")
    assert offset_ranges(batch) == [
        {"topic": "t", "partition": 0, "from": 5, "to": 7, "records": 2},
        {"topic": "t", "partition": 1, "from": 7, "to": 10, "records": 2}]
    assert offset_ranges(batch.limit(0)) == []


def test_not_held_drops_exactly_the_coordinates_bronze_has(spark: SparkSession) -> None:

    batch = spark.createDataFrame(
        [("t", 0, 5, "a"), ("t", 0, 6, "b"), ("t", 1, 5, "c"), ("t", 2, 7, "d"), ("u", 0, 6, "e")],
        "topic string, partition int, offset long, v string")
    bronze = spark.createDataFrame([("t", 0, 6, b"x"), ("t", 1, 6, b"y"), ("u", 1, 6, b"z")],
                                   "topic string, partition int, offset long, value binary")
    assert sorted(r.v for r in not_held(batch, bronze).collect()) == ["a", "c", "d", "e"]
    assert not_held(batch, bronze.limit(0)).count() == 5
