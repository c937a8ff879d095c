"""The shape of every bronze table by default: Kafka's record, untouched, plus ingest time
(a bronze definition that transforms starts from it: ``land(raw)``)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def land(raw: DataFrame) -> DataFrame:
    """Keep every Kafka field as it arrived (``value`` is never parsed here) and stamp
    the ingest time. In a streaming query ``current_timestamp`` is the micro-batch's
    time from Spark's offset log, so a replayed batch gets the same stamp."""
    ingested_at = F.current_timestamp()
    return raw.select(
        "key", "value", "topic", "partition", "offset", "timestamp",
        F.col("timestampType").alias("timestamp_type"), "headers",
        ingested_at.alias("ingested_at"),
        F.to_date(ingested_at).alias("ingest_date"),
    )
