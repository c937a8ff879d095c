"""Silver: bronze -> (contract, expectations, dedup) -> silver | quarantine, nothing lost.

One streaming query per silver table reads its bronze table's change feed (each row with
its bronze version). Each micro-batch, every step a Spark job on the executors:

1. ``classify`` (pure, one projection): parse the raw value against the contract and
   evaluate every compiled expectation; each record gets ``failed_rules`` and ``reasons``.
2. ``route``: rejected records become quarantine rows with every failed rule and reason;
   valid records are deduplicated on the contract key within the batch (first delivery
   in bronze order wins) and checked against silver in the event dates the batch
   touches, so silver holds each event once however late the redelivery.
3. Each expectation's result (element count, unexpected count and percent, success),
   computed from the same pass's counts with GX's formulas (``rules.results``), goes to
   ``silver._quality``. A critical expectation over its threshold stops the query before
   anything is written.
4. ``commit_change`` writes it, each part idempotent per batch (its app and batch id in
   the commit): silver (an append of the new rows), the quarantine (append), quality,
   then the batch's line in the ``silver._batches`` ledger. From the dedup read of silver
   (2.) to the silver commit the batch holds the table's write lock
   (``lakehouse.io.locks.writing``), as a quarantine replay of the table does: the rows
   found new are still new when they land.

Only counts reach the driver. Writes are also idempotent by Kafka coordinates: a record
silver or quarantine already holds is never written again, so a replay after a crash, a
new checkpoint, or a quarantine replay keep the accounting identity
``bronze rows = silver rows + quarantined + duplicates`` per batch and in total.
``route`` and ``commit_change`` are the one silver batch path: the stream, ``lakehouse
replay``, ``quarantine replay`` and ``forget`` all go through ``commit_change`` (the
first three through ``route`` too), each a ``Change`` of its ledger kind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery

from lakehouse import faults, graph
from lakehouse.batch import (
    BRONZE_VERSIONS,
    BatchIO,
    BatchRun,
    QuerySpec,
    Read,
    Written,
    storage_dataset,
)
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.checkpoints import has_checkpoint
from lakehouse.io.delta import (
    VERSION_COLUMN,
    add_columns,
    append,
    append_rows,
    ensure_table,
    read_files,
    read_table,
)
from lakehouse.io.delta_log import BatchCommit, WriteResult, last_batch, open_table
from lakehouse.io.locks import writing as table_writing
from lakehouse.layers.ledger import (
    LEDGER_SCHEMA,
    QUALITY_SCHEMA,
    QUARANTINE_SCHEMA,
    BatchReport,
    LedgerKind,
    ledger_row,
    quality_rows,
    routed_up_to,
)
from lakehouse.layers.routing import (
    COORDINATES,
    Routed,
    SilverPlan,
    assertions,
    classify,
    conform,
    contract_changes,
    load_plan,
    quarantine_rows,
    route,
    silver_rows,
)
from lakehouse.layers.stream import require_input, start_from_table
from lakehouse.lineage.tracking import Lineage
from lakehouse.observe.events import EventLog
from lakehouse.printing import Printer
from lakehouse.quality.in_force import archive
from lakehouse.quality.rules import RuleResult
from lakehouse.registry import SilverTable


def not_yet_quarantined(plan: SilverPlan, rejected: DataFrame, versions: tuple[int, int]
                        ) -> DataFrame:
    """Drop rejected records quarantine already holds (same coordinates)."""
    first, last = versions
    held = (read_files(rejected.sparkSession, plan.quarantine_uri,
                       [*COORDINATES, "_bronze_version"],
                       f"_bronze_version >= {first} AND _bronze_version <= {last}",
                       plan.storage_options)
            .filter(F.col("_bronze_version").between(first, last)).select(*COORDINATES))
    return rejected.join(held, list(COORDINATES), "left_anti")


def append_new(plan: SilverPlan, routed: Routed, commit: BatchCommit,
               columns: T.StructType) -> WriteResult:
    """Append the batch's new silver rows (``columns``: the table's, which ``evolve``
    returns). ``route`` found them new against silver under the table's write lock
    (``writing``), which the caller holds until this commit: no other writer adds a key
    in between, so an append keeps silver's keys unique without a MERGE (whose every
    commit costs delta-spark a rebuild of the table's state)."""
    return append(conform(routed.silver, columns), plan.uri, commit, ("event_date",))


def writing(plan: SilverPlan) -> AbstractContextManager[None]:
    """The silver table's write lock: held from the dedup read of silver to the commit of
    the rows it found new, by the stream and by a quarantine replay alike."""
    return table_writing(plan.warehouse_root, plan.table.qualified_name)


# -- the one write side: every change to silver, its quarantine, quality and ledger ------

TableWrite = Callable[[BatchCommit], WriteResult]
"""One table's part of a change: an append, a replace or a MERGE, idempotent per commit."""


LedgerLine = Callable[[WriteResult, WriteResult], BatchReport]
"""A change's ledger line, from what its silver and quarantine writes did."""


def unchanged(commit: BatchCommit) -> WriteResult:
    """A table's part of a change that writes nothing there."""
    return WriteResult(None, 0)


@dataclass(frozen=True)
class Change:
    """One change to a silver table's side, whoever makes it: the stream, a replay, a
    quarantine replay or an erasure. ``commit`` names the writer and its batch."""

    kind: LedgerKind
    commit: BatchCommit
    versions: tuple[int, int]
    """The bronze versions the change accounts for."""
    line: LedgerLine
    silver: TableWrite = unchanged
    quarantine: TableWrite = unchanged
    results: Sequence[RuleResult] = ()
    """Each expectation's result, for ``silver._quality``."""
    ledger_first: bool = False
    """Write the ledger line before the tables: a rebuild's counts are taken before they
    change, and a rebuild that died half way is resumed from its line."""


def commit_change(plan: SilverPlan, change: Change) -> tuple[BatchReport, list[Written]]:
    """The one way silver's side changes: (the ledger line first, for a rebuild), silver,
    the quarantine, the expectation results, then the ledger line. Every commit carries
    the writer's app and batch id, the bronze versions and the rules in force (kept in the
    archive first), so each part is written once however often the change is retried."""
    first, last = change.versions
    archive(plan.rules, plan.rules_uri, plan.storage_options,  # what the commits name
            plan.table_properties)
    commit = change.commit.with_metadata(**{BRONZE_VERSIONS: json.dumps(
        {"from": first, "to": last})}, **plan.rules.metadata())
    query, batch_id = str(commit.metadata.get("lakehouse.query", commit.app_id)), commit.batch_id
    writes: list[Written] = []

    def write(uri: str, result: WriteResult) -> WriteResult:
        writes.append(Written(uri, result.version, result.rows))
        return result

    def ledger(line: BatchReport) -> None:
        write(plan.ledger_uri, append_rows(
            ledger_row(plan, change.kind, commit.app_id, batch_id, change.versions, line),
            plan.ledger_uri, commit, plan.storage_options))

    nothing = WriteResult(None, 0)
    if change.ledger_first:
        ledger(change.line(nothing, nothing))
    silver = write(plan.uri, change.silver(commit))
    faults.crash_point(query, "after_delta_commit", batch_id)
    quarantine = write(plan.quarantine_uri, change.quarantine(commit))
    faults.crash_point(query, "after_quarantine_commit", batch_id)
    if change.results:
        write(plan.quality_uri, append_rows(
            quality_rows(plan, commit.app_id, batch_id, change.results), plan.quality_uri,
            commit, plan.storage_options))
    line = change.line(silver, quarantine)
    if not change.ledger_first:
        ledger(line)
    return line, writes


def next_batch(plan: SilverPlan, app: str) -> int:
    """The batch id of writer ``app``'s next change: one past the last that any of the
    table's side records (a change that died half way gets its own id again only if no
    table holds it yet)."""
    done = [last_batch(uri, app) for uri in
            (plan.uri, plan.quarantine_uri, plan.quality_uri, plan.ledger_uri)]
    return max((b for b in done if b is not None), default=-1) + 1


def stream_change(plan: SilverPlan, routed: Routed, commit: BatchCommit, started: float,
                  columns: T.StructType) -> Change:
    """A stream batch as a change: new silver rows appended (``columns``: the table's),
    rejected records the quarantine does not hold yet appended."""
    def quarantine(c: BatchCommit) -> WriteResult:
        if not routed.quarantined:
            return WriteResult(None, 0)
        rows = not_yet_quarantined(plan, routed.quarantine, routed.versions)
        return append(quarantine_rows(rows, plan.key, c.batch_id), plan.quarantine_uri, c)

    def line(silver: WriteResult, _: WriteResult) -> BatchReport:
        return BatchReport(routed.rows, routed.silver_rows, routed.quarantined,
                           routed.duplicates_in_batch, routed.duplicates_in_silver,
                           silver.version, time.monotonic() - started)

    return Change(LedgerKind.STREAM, commit, routed.versions, line,
                  (lambda c: append_new(plan, routed, c, columns)) if routed.new_rows
                  else unchanged, quarantine, routed.results)


# -- the streaming query -------------------------------------------------------------------

@dataclass
class SilverWriter:
    """The foreachBatch function of one silver query."""

    plan: SilverPlan
    printer: Printer
    query_name: str
    columns: T.StructType
    """Silver's columns, read once at start (a contract change restarts the query)."""

    def __call__(self, df: DataFrame, run: BatchRun) -> BatchIO:
        started = time.monotonic()
        bronze = storage_dataset(self.plan.bronze_uri)
        with writing(self.plan):
            routed = route(self.plan, df, run.batch_id)
            try:
                if routed.rows == 0:
                    return BatchIO([Read(bronze, 0)])
                routing = time.monotonic() - started
                commit = run.commit().with_metadata(**{"lakehouse.query": self.query_name})
                report, writes = commit_change(self.plan, stream_change(
                    self.plan, routed, commit, started, self.columns))
            finally:
                routed.release()
        version = f"version {report.silver_version}" if report.silver_version is not None \
            else "no new silver rows"
        self.printer(f"[{self.query_name}] batch {run.batch_id}: {report.describe()} -> "
                     f"{version} in {time.monotonic() - started:.2f}s (routing "
                     f"{routing:.2f}s, writes {time.monotonic() - started - routing:.2f}s)")
        read = Read(bronze, routed.rows, routed.versions,
                    assertions=assertions(self.plan, routed.rule_counts, routed.results))
        return BatchIO([read], writes, report.quarantined,
                       report.duplicates_in_batch + report.duplicates_in_silver,
                       routed.event_times)


def resume_version(plan: SilverPlan) -> int | None:
    """For a new checkpoint over a silver table with history: the first bronze version its
    ledger does not cover (nothing is processed, and counted, twice)."""
    if has_checkpoint(plan.checkpoint):
        return None
    done = routed_up_to(plan)
    return None if done is None else done + 1


def ensure_tables(plan: SilverPlan, silver_schema: T.StructType) -> None:
    """Create silver, its quarantine, ``_quality`` and ``_batches`` if missing."""
    options = plan.storage_options
    ensure_table(plan.uri, silver_schema, ("event_date",), plan.table.description,
                 change_feed=True, storage_options=options,
                 properties=plan.table_properties)
    ensure_table(plan.quarantine_uri, QUARANTINE_SCHEMA, (),
                 f"records rejected by {plan.table.qualified_name}'s contract or suite, with "
                 "every rule they failed", storage_options=options,
                 properties=plan.table_properties)
    ensure_table(plan.quality_uri, QUALITY_SCHEMA, (),
                 "Great Expectations results per silver micro-batch", storage_options=options,
                 properties=plan.table_properties)
    ensure_table(plan.ledger_uri, LEDGER_SCHEMA, (),
                 "per-batch accounting: bronze = silver + quarantined + duplicates",
                 storage_options=options,
                 properties=plan.table_properties)


def evolve(spark: SparkSession, plan: SilverPlan, rows: T.StructType,
           printer: Printer) -> T.StructType:
    """Bring silver's columns in line with the contract (``contract_changes``): add the
    new fields' columns, or refuse a type change before anything is written. Returns the
    table's columns afterwards."""
    table = read_table(spark, plan.uri).schema
    added, conflicts = contract_changes(table, rows)
    if conflicts:
        raise LakehouseError(
            ErrorCode.CONTRACT_BREAKS_TABLE,
            f"{plan.table.qualified_name} cannot take the contract {plan.contract.source_file}"
            f": {'; '.join(conflicts)}",
            hint="silver keeps a column's type (auditors read earlier versions with it): "
                 "put the old type back, or add the field under a new name",
            table=plan.table.qualified_name, file=plan.contract.source_file)
    if added:
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in added)
        add_columns(spark, plan.uri, columns)
        printer(f"[{plan.table.qualified_name}] the contract adds {columns.replace('`', '')}:"
                " new columns; rows before have them null (their values stay in extras)")
    return T.StructType([*table.fields, *added])


def prepare_tables(spark: SparkSession, pipeline: graph.Graph, table: SilverTable,
                   printer: Printer) -> None:
    """Before any query of a run starts: fit an existing silver table to its contract
    (``evolve``), so a contract it cannot take stops the run before anything is read."""
    plan = load_plan(pipeline, table)
    if open_table(plan.uri, plan.storage_options) is None \
            or open_table(plan.bronze_uri, plan.storage_options) is None:
        return
    bronze = (read_table(spark, plan.bronze_uri)
              .withColumn(VERSION_COLUMN, F.lit(0).cast("long")))
    evolve(spark, plan, silver_rows(classify(bronze, plan)).schema, printer)


def silver_writer(spark: SparkSession, plan: SilverPlan, printer: Printer,
                  bronze: DataFrame) -> tuple[SilverWriter, QuerySpec]:
    """The batch writer of a silver table and its lineage, its tables created. ``bronze``:
    the bronze rows it will read, with their version (a stream, or a batch of them)."""
    rows = silver_rows(classify(bronze, plan))
    ensure_tables(plan, rows.schema)
    columns = evolve(spark, plan, rows.schema, printer)
    name = plan.table.qualified_name
    spec = QuerySpec(name, storage_dataset(plan.bronze_uri), plan.bronze_uri,
                     [plan.uri, plan.quarantine_uri, plan.quality_uri, plan.ledger_uri],
                     {plan.uri: lambda: rows})
    return SilverWriter(plan, printer, name, columns), spec


def start_silver(spark: SparkSession, pipeline: graph.Graph, table: SilverTable,
                 printer: Printer, lineage: Lineage | None = None,
                 events: EventLog | None = None) -> StreamingQuery:
    """Start the streaming query that builds one silver table from its bronze table."""
    config = pipeline.config
    plan = load_plan(pipeline, table)
    query_name = table.qualified_name
    require_input(query_name, f"bronze.{table.bronze}", plan.bronze_uri, plan.storage_options)
    start = resume_version(plan)
    if start is not None:
        printer(f"[{query_name}] no checkpoint but the ledger covers bronze up to version "
                f"{start - 1}: continuing from version {start}")
    return start_from_table(spark, config, query_name, plan.checkpoint, plan.bronze_uri,
                            config.silver.max_bytes_per_trigger, start,
                            lambda bronze: silver_writer(spark, plan, printer, bronze),
                            lineage, events)
