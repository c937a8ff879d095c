"""Spark's Kafka source: the options a bronze query reads its topic with, and the stream."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from lakehouse.config import Config
from lakehouse.io.kafka_security import jvm_properties


def kafka_options(config: Config, source_name: str) -> dict[str, str]:
    """Options of Spark's Kafka source for one source's topic (``kafka.*`` client settings,
    e.g. SASL or SSL, pass through to the connector's consumers)."""
    source = config.source(source_name)
    streaming = config.streaming
    opts = {
        "kafka.bootstrap.servers": config.kafka.bootstrap_servers,
        "subscribe": source.topic,
        "startingOffsets": streaming.starting_offsets,
        "maxOffsetsPerTrigger": str(source.max_offsets_per_trigger
                                    or streaming.max_offsets_per_trigger),
        "failOnDataLoss": str(streaming.fail_on_data_loss).lower(),
        "includeHeaders": "true",
    }
    if streaming.min_partitions:
        opts["minPartitions"] = str(streaming.min_partitions)
    # Give up on a broker that went away sooner than the Java client's defaults (30 s a
    # request, 60 s an API call, which Spark retries three times), so an outage is
    # noticed and a stop is not held for minutes; client_properties override these.
    opts.update({"kafka.request.timeout.ms": "15000", "kafka.default.api.timeout.ms": "20000"})
    client = jvm_properties(config.kafka.client_properties)
    opts.update({f"kafka.{k}": v for k, v in client.items()})
    return opts


def read_kafka(spark: SparkSession, options: dict[str, str]) -> DataFrame:
    """The records of the topic ``options`` subscribe to, as a stream (Spark's Kafka
    source: key, value, topic, partition, offset, timestamp, headers)."""
    return spark.readStream.format("kafka").options(**options).load()
