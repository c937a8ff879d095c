"""The one foreachBatch harness every layer's query plugs into: each micro-batch a lineage
run and a row of the event log, its commits under the query's transaction app id; and the
start of a query fed by another table's change feed (silver from bronze, gold from
silver).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse.batch import BatchIO, BatchRun, QuerySpec
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.checkpoints import delta_batch_versions
from lakehouse.io.delta import CHANGE_COLUMNS, appended_rows, read_changes
from lakehouse.io.delta_log import open_table, rewriting
from lakehouse.lineage.tracking import Lineage, QueryLineage
from lakehouse.observe.events import EventLog


class BatchWriter(Protocol):
    """The work of one micro-batch: commit it, and say what it read and wrote."""

    def __call__(self, df: DataFrame, run: BatchRun) -> BatchIO: ...


def appended_only(writer: BatchWriter, uri: str, checkpoint: str) -> BatchWriter:
    """``writer`` fed the appended rows (``appended_rows``) of each micro-batch of a
    stream of the table at ``uri``'s change feed checkpointed at ``checkpoint``."""
    def each(df: DataFrame, run: BatchRun) -> BatchIO:
        versions = delta_batch_versions(checkpoint, run.batch_id)
        return writer(appended_rows(df, rewriting(uri, *versions)), run)
    return each


def start_batches(df: DataFrame, config: Config, name: str, checkpoint: str,
                  writer: BatchWriter, lineage: QueryLineage, events: EventLog | None = None
                  ) -> StreamingQuery:
    """Start ``df`` as the streaming query ``name``: every micro-batch goes to ``writer``
    (foreachBatch), checkpointed at ``checkpoint`` (the graph's), on the configured trigger. Its
    writes commit under the Delta transaction app id ``<name>:<checkpoint's query id>``:
    stable across restarts, new when the checkpoint is deleted, so a fresh checkpoint's
    batches are never mistaken for replays.

    Each micro-batch is a lineage run whose parent is the query's run: START before the
    writer runs, then COMPLETE with what it read and wrote, or FAIL with its error. The
    batch's run ids go into its commits (``BatchRun.commit``). Each is a row of the event
    log (``events``), completed by Spark's progress of the batch.
    """
    log = events or EventLog.off(config)

    def each(batch: DataFrame, batch_id: int) -> None:
        log.batch(name, batch_id, lineage.run_id,
                  lambda: lineage.tracked(batch_id, lambda run: writer(batch, run)))

    query = (df.writeStream.queryName(name).foreachBatch(each)
             .option("checkpointLocation", checkpoint)
             .trigger(processingTime=f"{config.streaming.trigger_seconds} seconds")
             .start())
    lineage.started(str(query.runId), f"{name}:{query.id}")
    return query


def require_input(query: str, upstream: str, uri: str, storage_options: dict[str, str]
                  ) -> None:
    """LH-DELTA-001 if the table ``query`` reads (``upstream``, at ``uri``) is not there."""
    if open_table(uri, storage_options) is None:
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND,
                             f"{query} reads {upstream}, which does not exist",
                             hint=f"run {upstream} first (lakehouse run runs all layers in "
                                  "order)")


def start_from_table(spark: SparkSession, config: Config, name: str, checkpoint: str,
                     upstream_uri: str, max_bytes_per_trigger: str, start: int | None,
                     writer_for: Callable[[DataFrame], tuple[BatchWriter, QuerySpec]],
                     lineage: Lineage | None, events: EventLog | None) -> StreamingQuery:
    """Start query ``name`` on the change feed of the table at ``upstream_uri`` (from
    version ``start``, or where its checkpoint is), each micro-batch's appended rows going
    to the writer ``writer_for`` makes from the rows it will read."""
    changes = read_changes(spark, upstream_uri, max_bytes_per_trigger, start)
    writer, spec = writer_for(changes.drop(*CHANGE_COLUMNS))
    tracker = (lineage or Lineage.off(config)).query(spec)
    return start_batches(changes, config, name, checkpoint,
                         appended_only(writer, upstream_uri, checkpoint), tracker, events)
