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
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery

from lakehouse import faults, graph
from lakehouse.batch import (
    BRONZE_VERSIONS,
    Assertion,
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
    CHANGE_COLUMNS,
    VERSION_COLUMN,
    BatchCommit,
    WriteResult,
    append,
    append_rows,
    arrow_schema,
    ensure_table,
    last_batch,
    open_table,
    read_changes,
    read_files,
    read_table,
)
from lakehouse.io.locks import writing as table_writing
from lakehouse.io.schema_registry import SchemaRegistry, registry_for
from lakehouse.lineage.tracking import Lineage
from lakehouse.observe.events import EventLog
from lakehouse.observe.latency import EventTimes, event_time_aggregates, event_times
from lakehouse.printing import Printer
from lakehouse.privacy import pii_key, pseudonymise
from lakehouse.quality.avro import parse_avro, reader_schema, subject
from lakehouse.quality.contract import (
    REASONS,
    RULES,
    Contract,
    failure_list,
    load_contract,
    parse,
)
from lakehouse.quality.rules import RuleResult, Suite, apply_rules, load_suite, results, statistics
from lakehouse.registry import SilverTable, bronze_source
from lakehouse.spark import appended_only, start_batches
from lakehouse.steps import step

# Bronze columns carried into silver (renamed) so every row names the record it came from,
# and when Kafka took it (gold's event -> gold latency starts there).
LINEAGE = (("topic", "_topic"), ("partition", "_partition"), ("offset", "_offset"),
           (VERSION_COLUMN, "_bronze_version"), ("ingested_at", "_ingested_at"),
           ("timestamp", "_kafka_timestamp"))
COORDINATES = ("_topic", "_partition", "_offset")
# Columns of a routed batch that describe the raw record, not the silver row.
RECORD_ONLY = frozenset({"key", "value", "failed_rules", "reasons"})


class LedgerKind(StrEnum):
    """What wrote a line of the ledger (``silver._batches``), its ``kind`` column."""

    STREAM = "stream"
    """A micro-batch of the streaming query."""
    REBUILD = "rebuild"
    """A ``lakehouse replay`` of the table from bronze: it replaces the lines it covers."""
    REPLAY = "replay"
    """A ``lakehouse quarantine replay``: records moved from quarantine to silver."""
    FORGET = "forget"
    """An erasure (``lakehouse forget``): negative counts."""


BRONZE_COLUMNS = frozenset({"key", "value", "topic", "partition", "offset", "timestamp",
                            "timestamp_type", "headers", "ingested_at", "ingest_date",
                            VERSION_COLUMN})


def _schema(*fields: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField(n, t, True) for n, t in fields])


_TS, _STR, _LONG = T.TimestampType(), T.StringType(), T.LongType()
QUARANTINE_SCHEMA = _schema(
    ("event_id", _STR), ("failed_rules", T.ArrayType(_STR)), ("reasons", T.ArrayType(_STR)),
    ("key", T.BinaryType()), ("value", T.BinaryType()), ("_topic", _STR),
    ("_partition", T.IntegerType()), ("_offset", _LONG), ("_bronze_version", _LONG),
    ("_kafka_timestamp", _TS), ("_ingested_at", _TS), ("batch_id", _LONG),
    ("quarantined_at", _TS), ("resolved_at", _TS), ("resolution", _STR))
QUALITY_SCHEMA = _schema(
    ("table", _STR), ("app_id", _STR), ("batch_id", _LONG), ("validated_at", _TS),
    ("rule", _STR), ("expectation_type", _STR), ("column", _STR), ("critical", T.BooleanType()),
    ("success", T.BooleanType()), ("element_count", _LONG), ("unexpected_count", _LONG),
    ("unexpected_percent", T.DoubleType()))
LEDGER_SCHEMA = _schema(
    ("table", _STR), ("kind", _STR), ("app_id", _STR), ("batch_id", _LONG),
    ("bronze_from_version", _LONG), ("bronze_to_version", _LONG), ("bronze_rows", _LONG),
    ("silver_rows", _LONG), ("quarantined_rows", _LONG), ("duplicates_in_batch", _LONG),
    ("duplicates_in_silver", _LONG), ("silver_version", _LONG), ("finished_at", _TS),
    ("seconds", T.DoubleType()))


@dataclass(frozen=True)
class AvroSource:
    """How silver decodes an Avro source: the registry and subject holding its writers'
    schemas, and the schema it reads every record as (the contract's)."""

    registry: SchemaRegistry
    subject: str
    reader: str
    """The reader schema as JSON text (``lakehouse.quality.avro.reader_schema``)."""


@dataclass(frozen=True)
class SilverPlan:
    """Everything a silver table's query needs, loaded and checked at start-up."""

    table: SilverTable
    contract: Contract
    suite: Suite
    uri: str
    quarantine_uri: str
    quality_uri: str
    ledger_uri: str
    bronze_uri: str
    critical_max_unexpected_percent: float
    warehouse_root: str
    """Where the table's write lock lives (``lakehouse.io.locks.writing``)."""
    storage_options: dict[str, str] = field(default_factory=dict)
    pii_key: bytes = field(default=b"", repr=False)
    """The key of the pseudonyms of the contract's pii fields (empty if it has none)."""
    avro: AvroSource | None = None
    """Where an Avro source's writer schemas are (None: the source is JSON)."""
    checkpoint: str = ""
    """The checkpoint of the table's streaming query."""

    @property
    def key(self) -> str:
        """The dedup key (the contract's event id)."""
        return self.contract.key


def load_plan(pipeline: graph.Graph, table: SilverTable) -> SilverPlan:
    """Load the table's contract and suite (errors name the file); its tables and
    checkpoint are the graph's."""
    config = pipeline.config
    folder = Path(config.expectations_dir)
    contract = load_contract(folder / f"{table.contract}.contract.yaml")
    suite = load_suite(folder / f"{table.contract}.suite.json",
                       tuple(f.name for f in contract.fields))
    wh = config.warehouse
    name = bronze_source(table.bronze)
    source = config.source(name) if name in config.source_names else None
    avro = None
    if source is not None and source.format == "avro":
        avro = AvroSource(registry_for(config), subject(source.topic),
                          json.dumps(reader_schema(contract)))
    def uri(role: graph.Role) -> str:
        return next(n.uri for n in pipeline.outputs(table.qualified_name) if n.role == role)

    return SilverPlan(table, contract, suite, uri(graph.Role.TABLE),
                      uri(graph.Role.QUARANTINE), uri(graph.Role.QUALITY),
                      uri(graph.Role.LEDGER), pipeline.node(f"bronze.{table.bronze}").uri,
                      config.silver.critical_max_unexpected_percent, wh.root,
                      dict(wh.storage_options),
                      pii_key(config) if contract.pii_fields else b"", avro,
                      pipeline.query(table.qualified_name).checkpoint)


# -- pure: classification and routing (Spark) ---------------------------------------------

def classify(bronze: DataFrame, plan: SilverPlan) -> DataFrame:
    """Bronze rows -> bronze columns + typed fields + ``_failed_rules`` and ``_reasons`` + ``event_date``.

    The rules see the raw values; the pii fields leave as their pseudonyms.

    The future-event check is against the record's bronze ingest time, so a batch
    replayed later is classified exactly as it was the first time.
    """
    if plan.avro is None:
        parsed = parse(bronze, plan.contract, "ingested_at")
    else:
        parsed = parse_avro(bronze, plan.contract, "ingested_at", plan.avro.subject,
                            plan.avro.registry.writers(plan.avro.subject), plan.avro.reader)
    checked = apply_rules(plan.table.transform(parsed), plan.suite)
    private = pseudonymise(checked, plan.contract.pii_fields, plan.pii_key)
    return private.withColumn("event_date", F.to_date(F.col(plan.contract.event_time)))


def silver_columns(classified: DataFrame) -> list[str]:
    """The business columns of silver: contract fields, derived ones, extras, event_date."""
    return [c for c in classified.columns if c not in BRONZE_COLUMNS and c not in (RULES, REASONS)]


def for_routing(classified: DataFrame) -> DataFrame:
    """One row per record: silver columns, lineage, raw record, failures."""
    lineage = [F.col(src).alias(dst) for src, dst in LINEAGE]
    return classified.select(
        *silver_columns(classified), *lineage, "key", "value",
        failure_list(RULES).alias("failed_rules"), failure_list(REASONS).alias("reasons"))


def silver_row_columns(routed: DataFrame) -> list[str]:
    """The columns of a silver row among a routed batch's."""
    return [c for c in routed.columns if c not in RECORD_ONLY]


def firsts(valid: DataFrame, key: str) -> DataFrame:
    """One record per key: the first delivery in bronze order (version, then Kafka
    coordinates)."""
    order = Window.partitionBy(key).orderBy(F.col("_bronze_version"), *COORDINATES)
    return (valid.withColumn("_n", F.row_number().over(order)).filter(F.col("_n") == 1)
            .drop("_n"))


def mark_held(records: DataFrame, held: DataFrame, key: str) -> DataFrame:
    """``records`` with ``_held`` (silver holds the key) and ``_same`` (what it holds is
    this very record: same Kafka coordinates). ``held``: silver's key and coordinates."""
    renamed = held.select(F.col(key).alias("_h_key"),
                          *[F.col(c).alias(f"_h{c}") for c in COORDINATES])
    joined = records.join(renamed, records[key] == renamed["_h_key"], "left")
    same: Column = F.lit(True)
    for c in COORDINATES:
        same = same & F.coalesce(joined[c] == joined[f"_h{c}"], F.lit(False))
    return joined.select(*[records[c] for c in records.columns],
                         renamed["_h_key"].isNotNull().alias("_held"), same.alias("_same"))


def quarantine_rows(rejected: DataFrame, key: str, batch_id: int) -> DataFrame:
    """Rejected records in the quarantine table's shape; its ``event_id`` column holds
    each record's contract ``key`` (whatever the field is called), where it could be read."""
    return rejected.select(
        F.col(key).cast("string").alias("event_id"), "failed_rules", "reasons", "key", "value",
        *COORDINATES, "_bronze_version", "_kafka_timestamp", "_ingested_at",
        F.lit(batch_id).cast("long").alias("batch_id"),
        F.current_timestamp().alias("quarantined_at"),
        F.lit(None).cast("timestamp").alias("resolved_at"),
        F.lit(None).cast("string").alias("resolution"))


def check_critical(plan: SilverPlan, verdicts: Sequence[RuleResult], batch_id: int) -> None:
    """Stop before writing when a critical expectation fails on too much of the batch."""
    for rule, verdict in zip(plan.suite.rules, verdicts, strict=True):
        if not rule.critical or not verdict.element_count:
            continue
        percent = verdict.unexpected_percent
        limit = rule.max_unexpected_percent if rule.max_unexpected_percent is not None \
            else plan.critical_max_unexpected_percent
        if percent > limit:
            raise LakehouseError(
                ErrorCode.CRITICAL_RULE_FAILED,
                f"{plan.table.qualified_name} batch {batch_id}: critical expectation "
                f"{rule.name} failed on {percent:.1f}% of {verdict.element_count:,} records "
                f"(limit {limit:g}%)",
                hint=f"nothing of this batch was written; fix the producer or the suite "
                     f"({plan.suite.source_file}), then restart: the batch is retried",
                table=plan.table.qualified_name, rule=rule.name, batch_id=batch_id)


def assertions(plan: SilverPlan, counts: dict[str, int], verdicts: Sequence[RuleResult]
               ) -> list[Assertion]:
    """The batch's data-quality assertions: the contract, then each suite expectation."""
    contract_failures = sum(n for rule, n in counts.items() if not rule.startswith("expect."))
    out = [Assertion(f"contract:{plan.contract.name}", contract_failures == 0, None, "error")]
    for rule, verdict in zip(plan.suite.rules, verdicts, strict=True):
        out.append(Assertion(rule.name, verdict.success, rule.column,
                             "error" if rule.critical else "warning"))
    return out


# -- one batch: route, validate, write ----------------------------------------------------

@dataclass
class Routed:
    """Where each record of a batch goes, as DataFrames over the cached batch, with the
    counts (the only figures that reach the driver)."""

    records: DataFrame
    """The routed batch (rows of ``for_routing``), cached until ``release``."""
    candidates: DataFrame
    """First deliveries of valid keys, with ``_held``/``_same`` against silver (cached)."""
    rows: int
    rule_counts: dict[str, int]
    versions: tuple[int, int]
    dates: list[date]
    """Event dates of the batch's valid records (silver's partitions it may touch)."""
    new_rows: int
    """Rows silver does not hold yet."""
    duplicates_in_batch: int
    duplicates_in_silver: int
    already_in_silver: int
    quarantined: int
    results: list[RuleResult] = field(default_factory=list)
    """Each expectation's result on the batch (GX's terms)."""
    event_times: EventTimes | None = None
    """The Kafka timestamps of the batch's records."""

    @property
    def quarantine(self) -> DataFrame:
        """Rejected records (rows of ``for_routing``)."""
        return self.records.filter(F.size("failed_rules") > 0)

    @property
    def silver(self) -> DataFrame:
        """New silver rows: first deliveries of keys silver does not hold yet."""
        return (self.candidates.filter(~F.col("_held"))
                .select(*silver_row_columns(self.records)))

    @property
    def silver_rows(self) -> int:
        """Records of this batch that are in silver (new or already there)."""
        return self.rows - self.quarantined - self.duplicates_in_batch - self.duplicates_in_silver

    def release(self) -> None:
        """Drop the cached batch."""
        self.candidates.unpersist()
        self.records.unpersist()


def held_keys(plan: SilverPlan, spark: SparkSession, dates: Sequence[date],
              before_version: int | None = None) -> DataFrame:
    """Silver's keys and coordinates in the given event dates (only their partitions'
    files are read), only those from bronze versions before ``before_version`` if
    given."""
    days = ", ".join(f"'{d.isoformat()}'" for d in dates)
    held = read_files(spark, plan.uri, [plan.key, *COORDINATES, "_bronze_version"],
                      f"event_date IN ({days})" if dates else "FALSE", plan.storage_options)
    if before_version is not None:
        held = held.filter(F.col("_bronze_version") < before_version)
    return held.select(plan.key, *COORDINATES)


def route(plan: SilverPlan, bronze: DataFrame, batch_id: int,
          before_version: int | None = None) -> Routed:
    """Classify, deduplicate and count one batch of bronze rows (with ``_commit_version``),
    judge each expectation, and stop on a critical rule before anything is written."""
    records = for_routing(classify(bronze, plan)).persist()
    with step("parse and rules"):
        totals = records.agg(*statistics(records, plan.suite),
                             F.count(F.when(F.size("failed_rules") > 0, 1)).alias("rejected"),
                             F.min("_bronze_version").alias("first"),
                             F.max("_bronze_version").alias("last"),
                             F.collect_set(F.when(F.size("failed_rules") == 0,
                                                  F.col("event_date"))).alias("dates"),
                             *event_time_aggregates("_kafka_timestamp")).first()
    assert totals is not None
    counts: dict[str, int] = {}
    if totals["rejected"]:
        with step("rule counts"):
            counts = {r["rule"]: r["n"] for r in
                      records.select(F.explode("failed_rules").alias("rule"))
                      .groupBy("rule").agg(F.count(F.lit(1)).alias("n")).collect()}
    rows = int(totals["_rows"])
    verdicts = results(plan.suite, rows,
                       {r.column: int(totals[f"_nulls_{r.column}"]) for r in plan.suite.rules},
                       {rule.removeprefix("expect."): n for rule, n in counts.items()})
    check_critical(plan, verdicts, batch_id)

    valid = records.filter(F.size("failed_rules") == 0)
    candidates = mark_held(firsts(valid, plan.key),
                           held_keys(plan, records.sparkSession, totals["dates"],
                                     before_version), plan.key).persist()
    with step("dedup against silver"):
        marks = candidates.agg(F.count(F.lit(1)).alias("firsts"),
                               F.count(F.when(F.col("_held") & ~F.col("_same"), 1))
                               .alias("dups"),
                               F.count(F.when(F.col("_same"), 1)).alias("same")).first()
    assert marks is not None
    valid_rows = rows - int(totals["rejected"])
    held = int(marks["dups"]) + int(marks["same"])
    return Routed(records, candidates, rows, counts,
                  (totals["first"], totals["last"]) if rows else (0, -1),
                  sorted(totals["dates"]), int(marks["firsts"]) - held,
                  valid_rows - int(marks["firsts"]), int(marks["dups"]), int(marks["same"]),
                  int(totals["rejected"]), verdicts, event_times(totals))


@dataclass(frozen=True)
class BatchReport:
    """What one silver batch did (also the ledger line)."""

    bronze_rows: int
    silver_rows: int
    quarantined: int
    duplicates_in_batch: int
    duplicates_in_silver: int
    silver_version: int | None
    seconds: float

    @property
    def pass_rate(self) -> float:
        """Share of the batch's records that met the contract and the suite."""
        return 1.0 - self.quarantined / self.bronze_rows if self.bronze_rows else 1.0

    def describe(self) -> str:
        """One progress line."""
        dup = self.duplicates_in_batch + self.duplicates_in_silver
        return (f"{self.bronze_rows:,} read -> {self.silver_rows:,} silver, "
                f"{self.quarantined:,} quarantined, {dup:,} duplicates "
                f"(pass rate {self.pass_rate:.1%})")


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


def quality_rows(plan: SilverPlan, app_id: str, batch_id: int,
                 verdicts: Sequence[RuleResult]) -> pa.Table:
    """Each expectation's result on one batch, as rows of ``silver._quality``."""
    now = datetime.now(UTC)
    return pa.Table.from_pylist([
        {"table": plan.table.qualified_name, "app_id": app_id, "batch_id": batch_id,
         "validated_at": now, "rule": r.rule, "expectation_type": r.expectation_type,
         "column": r.column, "critical": r.critical, "success": r.success,
         "element_count": r.element_count, "unexpected_count": r.unexpected_count,
         "unexpected_percent": r.unexpected_percent} for r in verdicts],
        schema=arrow_schema(QUALITY_SCHEMA))


def ledger_row(plan: SilverPlan, kind: LedgerKind, app_id: str, batch_id: int,
               versions: tuple[int, int], report: BatchReport) -> pa.Table:
    """One line of ``silver._batches``: where every record of a batch went."""
    return pa.Table.from_pylist([{
        "table": plan.table.qualified_name, "kind": kind, "app_id": app_id,
        "batch_id": batch_id, "bronze_from_version": versions[0],
        "bronze_to_version": versions[1], "bronze_rows": report.bronze_rows,
        "silver_rows": report.silver_rows, "quarantined_rows": report.quarantined,
        "duplicates_in_batch": report.duplicates_in_batch,
        "duplicates_in_silver": report.duplicates_in_silver,
        "silver_version": report.silver_version, "finished_at": datetime.now(UTC),
        "seconds": report.seconds}], schema=arrow_schema(LEDGER_SCHEMA))


# -- the one write side: every change to silver, its quarantine, quality and ledger ------

TableWrite = Callable[[BatchCommit], WriteResult]
"""One table's part of a change: an append, a replace or a MERGE, idempotent per commit."""


LedgerLine = Callable[[WriteResult, WriteResult], "BatchReport"]
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
    the writer's app and batch id and the bronze versions, so each part is written once
    however often the change is retried."""
    first, last = change.versions
    commit = change.commit.with_metadata(**{BRONZE_VERSIONS: json.dumps(
        {"from": first, "to": last})})
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


def routed_up_to(plan: SilverPlan) -> int | None:
    """The last bronze version the table's stream has routed or an erasure took into
    account (its ledger), if any."""
    done = _rows(plan.ledger_uri, plan.storage_options,
                 (pc.field("table") == plan.table.qualified_name)
                 & pc.field("kind").isin([LedgerKind.STREAM, LedgerKind.FORGET]),
                 ["bronze_to_version"])
    if done is None or done.num_rows == 0:
        return None
    return int(pc.max(done.column("bronze_to_version")).as_py())


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
                 change_feed=True, storage_options=options)
    ensure_table(plan.quarantine_uri, QUARANTINE_SCHEMA, (),
                 f"records rejected by {plan.table.qualified_name}'s contract or suite, with "
                 "every rule they failed", storage_options=options)
    ensure_table(plan.quality_uri, QUALITY_SCHEMA, (),
                 "Great Expectations results per silver micro-batch", storage_options=options)
    ensure_table(plan.ledger_uri, LEDGER_SCHEMA, (),
                 "per-batch accounting: bronze = silver + quarantined + duplicates",
                 storage_options=options)


def contract_changes(table: T.StructType, rows: T.StructType
                     ) -> tuple[list[T.StructField], list[str]]:
    """What a contract edit asks of an existing silver table: the columns to add (fields
    the contract gained), and the conflicts (a field whose type changed). A field the
    contract dropped stays a column; new rows have it null."""
    have = {f.name: f.dataType for f in table.fields}
    added = [f for f in rows.fields if f.name not in have]
    conflicts = [f"{f.name} is {have[f.name].simpleString()} in the table, "
                 f"{f.dataType.simpleString()} in the contract"
                 for f in rows.fields if f.name in have and have[f.name] != f.dataType]
    return added, conflicts


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
        spark.sql(f"ALTER TABLE delta.`{plan.uri}` ADD COLUMNS ({columns})")
        printer(f"[{plan.table.qualified_name}] the contract adds {columns.replace('`', '')}:"
                " new columns; rows before have them null (their values stay in extras)")
    return T.StructType([*table.fields, *added])


def conform(rows: DataFrame, table: T.StructType) -> DataFrame:
    """``rows`` with the table's columns in its order: a column the contract no longer
    names is null."""
    present = set(rows.columns)
    return rows.select(*[F.col(f.name) if f.name in present
                         else F.lit(None).cast(f.dataType).alias(f.name)
                         for f in table.fields])


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


def silver_rows(classified: DataFrame) -> DataFrame:
    """Classified records as silver rows: business columns, then lineage."""
    return classified.select(*silver_columns(classified),
                             *[F.col(s).alias(d) for s, d in LINEAGE])


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
    if open_table(plan.bronze_uri, plan.storage_options) is None:
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND,
                             f"{query_name} reads bronze.{table.bronze}, which does not exist",
                             hint=f"run bronze.{table.bronze} first (lakehouse run runs all "
                                  "layers in order)")
    start = resume_version(plan)
    if start is not None:
        printer(f"[{query_name}] no checkpoint but the ledger covers bronze up to version "
                f"{start - 1}: continuing from version {start}")
    bronze = read_changes(spark, plan.bronze_uri, config.silver.max_bytes_per_trigger, start)
    writer, spec = silver_writer(spark, plan, printer, bronze.drop(*CHANGE_COLUMNS))
    tracker = (lineage or Lineage.off(config)).query(spec)
    return start_batches(bronze, config, query_name,
                         appended_only(writer, plan.bronze_uri,
                                       plan.checkpoint),
                         tracker, events)


@dataclass(frozen=True)
class Accounting:
    """Where every bronze record of one silver table went, counted from the tables."""

    table: str
    bronze_rows: int
    silver_rows: int
    quarantined: int
    """Quarantined records not (yet) resolved by a replay."""
    duplicates: int
    """Dropped by the stream (ledger) plus quarantined records a replay found duplicate."""
    ledger_bronze_rows: int
    """Bronze records the stream's ledger says it processed."""

    @property
    def holds(self) -> bool:
        """bronze = silver + quarantined + duplicates, and the ledger saw every record."""
        return (self.bronze_rows == self.silver_rows + self.quarantined + self.duplicates
                and self.ledger_bronze_rows == self.bronze_rows)

    @property
    def pending(self) -> int:
        """Bronze records the stream has not processed yet (a job stopped before it caught
        up): the identity can only be judged once they are."""
        return max(0, self.bronze_rows - self.ledger_bronze_rows)

    def describe(self) -> str:
        """One line for the terminal."""
        verdict = ("holds" if self.holds else
                   f"{self.pending:,} bronze records not processed yet: the next run "
                   "processes them" if self.pending else "DOES NOT HOLD")
        return (f"{self.table}: bronze {self.bronze_rows:,} = silver {self.silver_rows:,} "
                f"+ quarantined {self.quarantined:,} + duplicates {self.duplicates:,} "
                f"({verdict})")


def _rows(uri: str, storage_options: dict[str, str], filter: pc.Expression | None = None,
          columns: list[str] | None = None) -> pa.Table | None:
    table = open_table(uri, storage_options)
    if table is None:
        return None
    return table.to_pyarrow_dataset().to_table(columns=columns, filter=filter)


def _count(uri: str, storage_options: dict[str, str],
           filter: pc.Expression | None = None) -> int:
    table = open_table(uri, storage_options)
    if table is None:
        return 0
    if filter is None:
        return int(table.count())  # from the log's file statistics, no data read
    return int(table.to_pyarrow_dataset().count_rows(filter=filter))


def accounting(pipeline: graph.Graph, table: SilverTable) -> Accounting:
    """The accounting identity of one silver table, from its tables and ledger."""
    plan = load_plan(pipeline, table)
    opts = plan.storage_options
    # Stream lines count each bronze record once; rebuild lines (lakehouse replay) hold
    # the change a rebuild made to the duplicates of the range it re-routed.
    ledger = _rows(plan.ledger_uri, opts,
                   (pc.field("table") == table.qualified_name)
                   & pc.field("kind").isin([LedgerKind.STREAM, LedgerKind.REBUILD,
                                            LedgerKind.FORGET]),
                   ["bronze_rows", "duplicates_in_batch", "duplicates_in_silver"])

    def total(name: str) -> int:
        return int(pc.sum(ledger.column(name)).as_py() or 0) if ledger is not None else 0

    return Accounting(
        table.qualified_name,
        _count(plan.bronze_uri, opts), _count(plan.uri, opts),
        _count(plan.quarantine_uri, opts, pc.field("resolution").is_null()),
        total("duplicates_in_batch") + total("duplicates_in_silver")
        + _count(plan.quarantine_uri, opts, pc.field("resolution") == "duplicate"),
        total("bronze_rows"))
