"""Silver's dedup steps on tiny Spark frames: first delivery in bronze order wins within
a batch; against silver, a held key is a duplicate unless it is the very same record."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from lakehouse.layers.routing import firsts, mark_held

RECORDS = "event_id string, amount double, _topic string, _partition int, _offset long, " \
          "_bronze_version long"
HELD = "event_id string, _topic string, _partition int, _offset long"


def records(spark: SparkSession, rows: list[tuple[str, float, int, int, int]]) -> DataFrame:
    """(event_id, amount, partition, offset, bronze version) per record."""
    return spark.createDataFrame([(k, a, "t", p, o, v) for k, a, p, o, v in rows], RECORDS)


def test_first_delivery_in_bronze_order_wins_within_a_batch(spark: SparkSession) -> None:
    data = records(spark, [("b", 2.0, 0, 9, 2), ("a", 1.0, 1, 5, 1), ("a", 1.5, 0, 7, 1),
                           ("b", 2.5, 0, 3, 2), ("b", 2.6, 0, 1, 3)])
    kept = {r["event_id"]: (r["_partition"], r["_offset"])
            for r in firsts(data, "event_id").collect()}
    assert kept == {"a": (0, 7), "b": (0, 3)}


def test_a_held_key_is_a_duplicate_unless_it_is_the_same_record(spark: SparkSession) -> None:
    data = records(spark, [("a", 1.0, 0, 1, 3), ("b", 1.0, 0, 2, 3), ("c", 1.0, 0, 3, 3)])
    held = spark.createDataFrame([("a", "t", 0, 1), ("b", "t", 4, 40)], HELD)
    marks = {r["event_id"]: (r["_held"], r["_same"])
             for r in mark_held(data, held, "event_id").collect()}
    assert marks == {"a": (True, True),  # this very record, written before a crash
                     "b": (True, False),  # another delivery of an event silver holds
                     "c": (False, False)}
