"""The chained shape (``streaming.shape: chained``): one streaming query per source, and
in each of its micro-batches bronze, then silver, then gold.

In the per-table shape every table has its own query, checkpoint and trigger: a record
waits for a trigger of each layer in turn, and the layers' queries compete for the cores.
Chained, the query that reads Kafka lands its micro-batch in bronze; then each silver
table reading that bronze table routes the bronze versions it has not routed yet; then
each gold table reading that silver table merges the silver versions it has not merged
yet; sibling stages (the gold tables of one silver table) run side by side, each in a
thread of its own. The stages run the per-table shape's own writers (``SilverWriter``, ``GoldWriter``)
on a batch read of their input's change feed, so a table holds the same rows whichever
shape built it.

Exactly once without a checkpoint per stage: a stage reads a range of versions of its
input (about its layer's ``max_bytes_per_trigger``, at least one commit) and commits it as
the Delta transaction ``(<table>:chained, <first version of the range>)``: input versions
only grow, so the transaction versions do too, whatever happens to checkpoints. The range
starts after what the table's own records say it covers (silver's ledger, gold's
``lakehouse.silver_versions`` commits), so after a crash the replay reads the same range
and the commits that had landed are skipped. At start the chain removes the per-table
checkpoints of the tables it drives (a later run in the per-table shape resumes them from
those same records) and catches them up with what their inputs already hold, before the
query reads Kafka.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse import graph
from lakehouse.batch import BatchIO, BatchRun
from lakehouse.io.delta import read_appended
from lakehouse.io.delta_log import adds_files, latest_version, size_bytes, versions_up_to_bytes
from lakehouse.io.storage import is_dir, remove_tree
from lakehouse.layers.bronze import BronzeWriter, bronze_writer
from lakehouse.layers.gold import GoldPlan, gold_writer, load_gold_plan, read_progress
from lakehouse.layers.ledger import routed_up_to
from lakehouse.layers.routing import load_plan
from lakehouse.layers.silver import silver_writer
from lakehouse.layers.stream import BatchWriter, start_batches
from lakehouse.lineage.tracking import Lineage, QueryLineage, new_run_id
from lakehouse.observe.events import EventLog
from lakehouse.printing import Printer
from lakehouse.registry import BronzeTable, GoldTable, SilverTable

CHAINED = "chained"
"""The Delta transaction app id of a chained stage is ``<table>:chained``."""


@dataclass
class Stage:
    """One table driven by a chain: the versions of its input it reads next, its writer,
    its lineage, and the stages that read it."""

    name: str
    input_uri: str
    writer: BatchWriter
    lineage: QueryLineage
    events: EventLog
    """The run's event log: each range the stage commits is a row."""
    next_version: int
    max_bytes: int
    pinned: int | None = None
    """The last input version of a range whose commits partly landed before a crash (a
    two-stage gold table's output without its state): the replay reads exactly it."""
    then: list[Stage] = field(default_factory=list)

    def catch_up(self, spark: SparkSession) -> None:
        """Process every version of the input not processed yet, range by range, each
        followed by the stages downstream; with nothing new here, the stages downstream
        still catch up with what this table holds (one killed while its sibling stage
        was committing is behind it)."""
        last = latest_version(self.input_uri)
        if last is None or self.next_version > last:
            catch_up_all(self.then, spark)
            return
        while last is not None and self.next_version <= last:
            first = self.next_version
            end = versions_up_to_bytes(self.input_uri, first, last, self.max_bytes)
            if self.pinned is not None and self.pinned >= first:
                end = min(self.pinned, last)
            self.pinned = None
            if adds_files(self.input_uri, first, end):  # else no rows: no batch to run
                changes = read_appended(spark, self.input_uri, first, end)
                self.events.batch(
                    self.name, first, self.lineage.run_id,
                    partial(self.lineage.tracked, first, partial(self.writer, changes)),
                    streamed=False)
            self.next_version = end + 1
            catch_up_all(self.then, spark)


def catch_up_all(stages: Sequence[Stage], spark: SparkSession) -> None:
    """Catch sibling stages up side by side (each reads the same input and commits to
    tables of its own; their Spark jobs share the session's cores), and fail, once all
    have ended, with the first one's error. Each runs on a session of its own: a MERGE
    takes its commit metadata from its session's conf."""
    if len(stages) <= 1:
        for stage in stages:
            stage.catch_up(spark)
        return
    with ThreadPoolExecutor(len(stages), thread_name_prefix="lakehouse-stage") as pool:
        # Each thread sees the batch's context: its steps land in the batch's breakdown.
        futures = [pool.submit(contextvars.copy_context().run, stage.catch_up,
                               spark.newSession()) for stage in stages]
    for future in futures:
        future.result()


@dataclass
class ChainWriter:
    """The foreachBatch function of a chain: the bronze append, then its stages."""

    bronze: BronzeWriter
    stages: list[Stage]

    def __call__(self, df: DataFrame, run: BatchRun) -> BatchIO:
        io = self.bronze(df, run)
        catch_up_all(self.stages, df.sparkSession)
        return io

    def all_stages(self) -> list[Stage]:
        """Every stage of the chain, in flow order."""
        out: list[Stage] = []
        pending = list(self.stages)
        while pending:
            stage = pending.pop(0)
            out.append(stage)
            pending.extend(stage.then)
        return out


def _schema_frame(spark: SparkSession, uri: str) -> DataFrame:
    """An input table's rows with their version, as the stage's batches will have them
    (its latest commit's changes: only the schema is used)."""
    last = latest_version(uri) or 0
    return read_appended(spark, uri, last, last)


def _own_checkpoint_removed(pipeline: graph.Graph, name: str, printer: Printer) -> None:
    checkpoint = pipeline.query(name).checkpoint
    if is_dir(checkpoint):
        remove_tree(checkpoint)
        printer(f"[{name}] runs chained: removed its own checkpoint (its ledger and commits "
                "say where it stands)")


def _gold_stage(spark: SparkSession, pipeline: graph.Graph, table: GoldTable, printer: Printer,
                lineage: Lineage, events: EventLog) -> Stage:
    config = pipeline.config
    plan: GoldPlan = load_gold_plan(pipeline, table)
    writer, spec = gold_writer(spark, plan, printer, _schema_frame(spark, plan.silver_uri))
    done = read_progress(plan.progress_uri, plan.storage_options)
    if done is not None:
        printer(f"[{table.qualified_name}] continuing from version {done + 1} of "
                f"silver.{table.silver} (its commits cover the ones before)")
    pinned = None
    if plan.state_uri is not None:
        output = read_progress(plan.uri, plan.storage_options)
        if output is not None and (done is None or output > done):
            pinned = output
    return Stage(table.qualified_name, plan.silver_uri, writer, lineage.query(spec), events,
                 0 if done is None else done + 1,
                 size_bytes(config.gold.max_bytes_per_trigger), pinned)


def _silver_stage(spark: SparkSession, pipeline: graph.Graph, table: SilverTable,
                  golds: Sequence[GoldTable], printer: Printer, lineage: Lineage,
                  events: EventLog) -> Stage:
    config = pipeline.config
    plan = load_plan(pipeline, table)
    writer, spec = silver_writer(spark, plan, printer, _schema_frame(spark, plan.bronze_uri))
    done = routed_up_to(plan)
    if done is not None:
        printer(f"[{table.qualified_name}] continuing from version {done + 1} of "
                f"bronze.{table.bronze} (its ledger covers the ones before)")
    stage = Stage(table.qualified_name, plan.bronze_uri, writer, lineage.query(spec), events,
                  0 if done is None else done + 1,
                  size_bytes(config.silver.max_bytes_per_trigger))
    stage.then = [_gold_stage(spark, pipeline, g, printer, lineage, events) for g in golds]
    return stage


def start_chain(spark: SparkSession, pipeline: graph.Graph, bronze: BronzeTable,
                silvers: Sequence[tuple[SilverTable, Sequence[GoldTable]]], printer: Printer,
                lineage: Lineage, reset_to: str | None = None, events: EventLog | None = None
                ) -> tuple[StreamingQuery, list[str]]:
    """Start one source's chain: catch the given silver tables (and after each, their gold
    tables) up with what bronze holds, then start the bronze table's query, whose every
    micro-batch catches them up again. Returns the query and the names of the tables it
    drives after bronze."""
    config = pipeline.config
    out, writer, spec = bronze_writer(spark, pipeline, bronze, printer, reset_to)
    events = events or EventLog.off(config)
    stages = [_silver_stage(spark, pipeline, s, golds, printer, lineage, events)
              for s, golds in silvers]
    chain = ChainWriter(writer, stages)
    driven = chain.all_stages()
    for stage in driven:
        _own_checkpoint_removed(pipeline, stage.name, printer)
        stage.lineage.started(new_run_id(), f"{stage.name}:{CHAINED}")
    catch_up_all(stages, spark)
    query = start_batches(out, config, bronze.qualified_name,
                          pipeline.query(bronze.qualified_name).checkpoint, chain,
                          lineage.query(spec), events)
    return query, [stage.name for stage in driven]
