"""Spark's Kafka source: a topic's records as a stream (``layers.bronze.kafka_options``
says which topic and how)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession


def read_kafka(spark: SparkSession, options: dict[str, str]) -> DataFrame:
    """The records of the topic ``options`` subscribe to, as a stream (Spark's Kafka
    source: key, value, topic, partition, offset, timestamp, headers)."""
    return spark.readStream.format("kafka").options(**options).load()
