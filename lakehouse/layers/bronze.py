"""Bronze: each source's Kafka records land untouched, exactly once, in its Delta table.

One streaming query per bronze table reads its topic with Spark's Kafka connector
(``lakehouse.io.kafka_source``). Each micro-batch is one idempotent Delta append
(``BronzeWriter``) committed with the batch id as the Delta transaction version and the
batch's Kafka offset ranges (from the query's offset log) in the commit, so a restart,
a lost checkpoint (``resume_offsets``) or a reset to earlier offsets (``reset_to``)
lands each record once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse import faults, graph
from lakehouse.batch import (
    KAFKA_OFFSETS,
    BatchIO,
    BatchRun,
    DatasetName,
    QuerySpec,
    Read,
    Written,
    kafka_dataset,
)
from lakehouse.config import Config
from lakehouse.io.checkpoints import has_checkpoint
from lakehouse.io.delta import append, ensure_table, read_table
from lakehouse.io.delta_log import max_kafka_offsets
from lakehouse.io.kafka_admin import admin_client, topic_partitions
from lakehouse.io.kafka_offsets import OffsetRange, batch_ranges
from lakehouse.io.kafka_security import jvm_properties
from lakehouse.io.kafka_source import read_kafka
from lakehouse.layers.stream import start_batches
from lakehouse.lineage.tracking import Lineage
from lakehouse.observe.events import EventLog
from lakehouse.printing import Printer
from lakehouse.registry import BronzeTable

EARLIEST = -2
"""Spark's ``startingOffsets`` JSON for 'the earliest offset Kafka holds'."""


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


def not_held(batch: DataFrame, bronze: DataFrame) -> DataFrame:
    """The batch's records whose Kafka coordinates the bronze table does not hold yet."""
    held = bronze.select("topic", "partition", "offset")
    return batch.join(held, ["topic", "partition", "offset"], "left_anti")


def commit_ranges(ranges: Sequence[OffsetRange]) -> list[dict[str, Any]]:
    """Offset ranges as bronze commits record them: ``{topic, partition, from, to}``, end
    exclusive."""
    return [{"topic": r.topic, "partition": r.partition, "from": r.start, "to": r.end}
            for r in ranges]


@dataclass
class BronzeWriter:
    """The foreachBatch function of one bronze query: an idempotent Delta append.

    The batch's Kafka offset ranges come from the query's offset log (Spark writes them
    before the batch runs), so the batch is read from Kafka once, by the write itself:
    nothing is cached and no job runs but the append."""

    table: BronzeTable
    uri: str
    query_name: str
    checkpoint: str
    printer: Printer
    source: DatasetName
    skip_held: bool = False
    """Drop records the table already holds (same partition and offset): a reset to
    earlier offsets lands only what is missing."""

    def __call__(self, df: DataFrame, run: BatchRun) -> BatchIO:
        started = time.monotonic()
        batch_id = run.batch_id
        ranges = commit_ranges(batch_ranges(self.checkpoint, batch_id))
        offsets = sum(r["to"] - r["from"] for r in ranges)
        batch = not_held(df, read_table(df.sparkSession, self.uri)) \
            if self.skip_held else df
        commit = run.commit(**{"lakehouse.query": self.query_name, KAFKA_OFFSETS: ranges})
        faults.crash_point(self.query_name, "before_delta_commit", batch_id)
        result = append(batch, self.uri, commit, self.table.partition_by)
        faults.crash_point(self.query_name, "after_delta_commit", batch_id)
        if result.written:
            skipped = f"; {offsets - result.rows:,} records of the {offsets:,} offsets were " \
                "in the table already" if self.skip_held and result.rows < offsets else ""
            self.printer(f"[{self.query_name}] batch {batch_id}: {result.rows:,} rows -> "
                         f"version {result.version} in {time.monotonic() - started:.2f}s "
                         f"({_span(ranges)}){skipped}")
        else:
            self.printer(f"[{self.query_name}] batch {batch_id}: already in the table "
                         f"(replay after a restart, or nothing new), skipped {offsets:,} "
                         "offsets")
        # Every offset of the batch landed as a row, unless it was partly or wholly held.
        read = result.rows if result.written and not self.skip_held else offsets
        return BatchIO([Read(self.source, read, offsets=ranges)],
                       [Written(self.uri, result.version, result.rows)])


def _span(ranges: list[dict[str, Any]]) -> str:
    parts = [f"p{r['partition']}:{r['from']}-{r['to'] - 1}" for r in ranges]
    return " ".join(parts[:6]) + (" ..." if len(parts) > 6 else "")


def resume_offsets(pipeline: graph.Graph, table: BronzeTable, printer: Printer) -> str | None:
    """Starting offsets for a new checkpoint over a table that already holds records.

    A deleted (or moved) checkpoint must not make the query read Kafka again from the
    configured start and land every record twice: continue after what the table holds,
    and from the earliest offset in partitions it holds nothing of (Spark's connector
    wants every partition named).
    """
    config = pipeline.config
    if has_checkpoint(pipeline.query(table.qualified_name).checkpoint):
        return None
    held = max_kafka_offsets(pipeline.node(table.qualified_name).uri,
                             config.warehouse.storage_options)
    if not held:
        return None
    topic = config.source(table.source).topic
    admin = admin_client(config.kafka.bootstrap_servers, config.kafka.client_properties)
    partitions = topic_partitions(admin, config.kafka.bootstrap_servers, topic,
                                  config.kafka.client_properties)
    start = {topic: {str(p): held.get(topic, {}).get(str(p), EARLIEST) for p in partitions}}
    printer(f"[{table.qualified_name}] no checkpoint but the table holds records: "
            f"continuing after them ({len(held.get(topic, {}))} of {len(partitions)} "
            "partitions)")
    return json.dumps(start)


def bronze_writer(spark: SparkSession, pipeline: graph.Graph, table: BronzeTable, printer: Printer,
                  reset_to: str | None = None) -> tuple[DataFrame, BronzeWriter, QuerySpec]:
    """A bronze table's Kafka stream, its batch writer and its lineage, the table created;
    with ``reset_to`` (Spark's ``startingOffsets`` JSON, on a new checkpoint) from those
    offsets, landing only the records the table does not hold yet."""
    config = pipeline.config
    options = kafka_options(config, table.source)
    resume = reset_to or resume_offsets(pipeline, table, printer)
    if resume:
        options["startingOffsets"] = resume
    raw = read_kafka(spark, options)
    out = table.transform(raw)
    uri = pipeline.node(table.qualified_name).uri
    ensure_table(uri, out.schema, table.partition_by, table.description, change_feed=True,
                 storage_options=config.warehouse.storage_options,
                 properties=config.retention.delta_properties)
    query_name = table.qualified_name
    topic = kafka_dataset(config.kafka.bootstrap_servers, config.source(table.source).topic)
    writer = BronzeWriter(table, uri, query_name,
                          pipeline.query(query_name).checkpoint, printer, topic,
                          skip_held=reset_to is not None)
    return out, writer, QuerySpec(query_name, topic, None, [uri], {uri: lambda: out})


def start_bronze(spark: SparkSession, pipeline: graph.Graph, table: BronzeTable,
                 printer: Printer = print, lineage: Lineage | None = None,
                 reset_to: str | None = None, events: EventLog | None = None
                 ) -> StreamingQuery:
    """Start the streaming query that lands one source in its bronze table (see
    ``bronze_writer`` for ``reset_to``)."""
    config = pipeline.config
    out, writer, spec = bronze_writer(spark, pipeline, table, printer, reset_to)
    tracker = (lineage or Lineage.off(config)).query(spec)
    return start_batches(out, config, table.qualified_name,
                         pipeline.query(table.qualified_name).checkpoint, writer, tracker, events)
