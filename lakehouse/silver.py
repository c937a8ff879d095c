"""Silver: bronze -> (contract, expectations, dedup) -> silver | quarantine, nothing lost.

One streaming query per silver table reads its bronze table through the ``delta-py``
source (offsets are bronze versions). Each micro-batch:

1. ``classify`` (pure, one Spark projection): parse the raw value against the contract
   and evaluate every compiled expectation; each record gets ``_failed_rules`` and ``_reasons``.
2. ``route`` (pure, Arrow): rejected records -> quarantine rows with every failed rule
   and reason; valid records are deduplicated on the contract key within the batch and
   against silver (looked up in the event dates the batch touches), so silver holds each
   event once however late the redelivery.
3. GX validates the batch with the same suite; its results go to ``silver._quality``. A
   critical expectation over its threshold stops the query before anything is written.
4. Writes, each an idempotent Delta append (transaction id = batch id): quarantine,
   silver, quality, then the batch's line in the ``silver._batches`` ledger.

Every write is also idempotent by Kafka coordinates: a record already in silver (or
quarantine) at the same topic/partition/offset is never written again, so a replay
after a crash, a new checkpoint, or a quarantine replay keep the accounting identity
``bronze rows = silver rows + quarantined + duplicates`` per batch and in total.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.streaming import StreamingQuery

from lakehouse import faults
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta import AppIdBinding, IdempotentAppender, ensure_table, open_table
from lakehouse.io.delta_source import FORMAT_NAME as DELTA_FORMAT
from lakehouse.io.delta_source import VERSION_COLUMN
from lakehouse.lineage.datasets import (
    BRONZE_VERSIONS,
    Assertion,
    BatchIO,
    BatchRun,
    QuerySpec,
    Read,
    Written,
    storage_dataset,
)
from lakehouse.lineage.tracking import Lineage
from lakehouse.quality.contract import REASONS, RULES, Contract, failure_list, load_contract, parse
from lakehouse.quality.gx import RuleResult, Validator
from lakehouse.quality.rules import Suite, apply_rules, load_suite
from lakehouse.registry import SilverTable
from lakehouse.spark import start_batches

Printer = Callable[[str], None]

# Bronze columns carried into silver (renamed) so every row names the record it came from.
LINEAGE = (("topic", "_topic"), ("partition", "_partition"), ("offset", "_offset"),
           (VERSION_COLUMN, "_bronze_version"), ("ingested_at", "_ingested_at"))
COORDINATES = ("_topic", "_partition", "_offset")
# Columns of a collected batch that describe the raw record, not the silver row.
RECORD_ONLY = frozenset({"key", "value", "_kafka_timestamp", "failed_rules", "reasons"})
REBUILD = "rebuild"
"""Ledger kind of a ``lakehouse replay`` of a silver table."""
BRONZE_COLUMNS = frozenset({"key", "value", "topic", "partition", "offset", "timestamp",
                            "timestamp_type", "headers", "ingested_at", "ingest_date",
                            VERSION_COLUMN})

QUARANTINE_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("failed_rules", pa.list_(pa.string())),
    ("reasons", pa.list_(pa.string())), ("key", pa.binary()), ("value", pa.binary()),
    ("_topic", pa.string()), ("_partition", pa.int32()), ("_offset", pa.int64()),
    ("_bronze_version", pa.int64()), ("_kafka_timestamp", pa.timestamp("us", tz="UTC")),
    ("_ingested_at", pa.timestamp("us", tz="UTC")), ("batch_id", pa.int64()),
    ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ("resolved_at", pa.timestamp("us", tz="UTC")), ("resolution", pa.string()),
])
QUALITY_SCHEMA = pa.schema([
    ("table", pa.string()), ("app_id", pa.string()), ("batch_id", pa.int64()),
    ("validated_at", pa.timestamp("us", tz="UTC")), ("rule", pa.string()),
    ("expectation_type", pa.string()), ("column", pa.string()), ("critical", pa.bool_()),
    ("success", pa.bool_()), ("element_count", pa.int64()), ("unexpected_count", pa.int64()),
    ("unexpected_percent", pa.float64()), ("validation_seconds", pa.float64()),
])
LEDGER_SCHEMA = pa.schema([
    ("table", pa.string()), ("kind", pa.string()), ("app_id", pa.string()),
    ("batch_id", pa.int64()), ("bronze_from_version", pa.int64()),
    ("bronze_to_version", pa.int64()), ("bronze_rows", pa.int64()), ("silver_rows", pa.int64()),
    ("quarantined_rows", pa.int64()), ("duplicates_in_batch", pa.int64()),
    ("duplicates_in_silver", pa.int64()), ("silver_version", pa.int64()),
    ("finished_at", pa.timestamp("us", tz="UTC")), ("seconds", pa.float64()),
    ("validation_seconds", pa.float64()),
])


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
    storage_options: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The dedup key (the contract's event id)."""
        return self.contract.key


def load_plan(config: Config, table: SilverTable) -> SilverPlan:
    """Load the table's contract and suite (errors name the file) and its table URIs."""
    folder = Path(config.expectations_dir)
    contract = load_contract(folder / f"{table.contract}.contract.yaml")
    suite = load_suite(folder / f"{table.contract}.suite.json",
                       tuple(f.name for f in contract.fields))
    wh = config.warehouse
    return SilverPlan(table, contract, suite, wh.table_uri("silver", table.name),
                      wh.table_uri("silver", table.quarantine_name),
                      wh.table_uri("silver", "_quality"), wh.table_uri("silver", "_batches"),
                      wh.table_uri("bronze", table.bronze),
                      config.silver.critical_max_unexpected_percent,
                      dict(wh.storage_options))


# -- pure: classification (Spark) and routing (Arrow) --------------------------------------

def classify(bronze: DataFrame, plan: SilverPlan) -> DataFrame:
    """Bronze rows -> bronze columns + typed fields + ``_failed_rules`` and ``_reasons`` + ``event_date``.

    The future-event check is against the record's bronze ingest time, so a batch
    replayed later is classified exactly as it was the first time.
    """
    parsed = parse(bronze, plan.contract, F.col("ingested_at"))
    checked = apply_rules(plan.table.transform(parsed), plan.suite)
    return checked.withColumn("event_date", F.to_date(F.col(plan.contract.event_time)))


def silver_columns(classified: DataFrame) -> list[str]:
    """The business columns of silver: contract fields, derived ones, extras, event_date."""
    return [c for c in classified.columns if c not in BRONZE_COLUMNS and c not in (RULES, REASONS)]


def for_routing(classified: DataFrame) -> DataFrame:
    """The one projection collected per batch: silver columns, lineage, raw record, failures."""
    lineage = [F.col(src).alias(dst) for src, dst in LINEAGE]
    return classified.select(
        *silver_columns(classified), *lineage, "key", "value",
        F.col("timestamp").alias("_kafka_timestamp"),
        failure_list(RULES).alias("failed_rules"), failure_list(REASONS).alias("reasons"))


@dataclass(frozen=True)
class Routed:
    """Where each record of a batch goes."""

    silver: pa.Table
    """New silver rows (not yet in silver)."""
    quarantine: pa.Table
    """Rejected records (rows of ``for_routing``)."""
    already_in_silver: int
    """Valid records silver already holds at the same coordinates (a replayed batch)."""
    duplicates_in_batch: int
    duplicates_in_silver: int

    @property
    def silver_rows(self) -> int:
        """Records of this batch that are in silver (new or already there)."""
        return self.silver.num_rows + self.already_in_silver

    @property
    def duplicates(self) -> int:
        """Records dropped as duplicates of an event silver holds."""
        return self.duplicates_in_batch + self.duplicates_in_silver


def route(batch: pa.Table, existing: pa.Table, key: str, columns: Sequence[str]) -> Routed:
    """Split a collected batch into silver, quarantine and duplicates (pure).

    ``existing``: silver's rows with this batch's keys (``key`` plus coordinates). The
    first delivery of a key in bronze order wins within the batch; a key silver already
    holds is a duplicate unless silver holds this very record (same coordinates).
    """
    failed = pc.greater(pc.list_value_length(batch.column("failed_rules")), 0)
    quarantine = batch.filter(failed)
    valid = batch.filter(pc.invert(failed))
    order = valid.sort_by([("_bronze_version", "ascending"), ("_topic", "ascending"),
                           ("_partition", "ascending"), ("_offset", "ascending")])
    order = order.append_column("_i", pa.array(range(order.num_rows), pa.int64()))
    firsts = order.group_by(key).aggregate([("_i", "min")]).column("_i_min")
    unique = order.take(pc.take(firsts, pc.sort_indices(firsts)))  # bronze order
    in_batch_dups = valid.num_rows - unique.num_rows

    seen, same = match_held(unique, existing, key)
    new = unique.filter(pc.invert(seen)).select(list(columns))
    already = pc.sum(pc.cast(same, pa.int64())).as_py() or 0
    dup_silver = (pc.sum(pc.cast(seen, pa.int64())).as_py() or 0) - already
    return Routed(new, quarantine, already, in_batch_dups, dup_silver)


def match_held(records: pa.Table, existing: pa.Table, key: str
               ) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Per record, in order: does ``existing`` (silver) hold its key, and is what it
    holds this very record (same Kafka coordinates)?"""
    coords = list(COORDINATES)
    held = existing.select([key, *coords]).rename_columns([key, *(f"_held{c}" for c in coords)])
    found = lookup(records.select([key, *coords]), held, [key])
    seen = pc.is_valid(found.column("_held_topic"))
    same = seen
    for c in coords:
        same = pc.and_(same, pc.fill_null(pc.equal(found.column(c), found.column(f"_held{c}")),
                                          False))
    return seen, same


def lookup(left: pa.Table, right: pa.Table, keys: list[str]) -> pa.Table:
    """``left`` (flat columns) left-outer-joined to ``right``, one row per left row, in
    left order. Only flat columns take part: Arrow joins cannot carry list columns."""
    indexed = left.append_column("_li", pa.array(range(left.num_rows), pa.int64()))
    return indexed.join(right, keys, join_type="left outer").sort_by("_li")


def rule_counts(batch: pa.Table) -> dict[str, int]:
    """How many records of the batch failed each rule."""
    flat = pc.list_flatten(batch.column("failed_rules"))
    if len(flat) == 0:
        return {}
    counts = pc.value_counts(flat)
    return {v["values"].as_py(): v["counts"].as_py() for v in counts}


def check_critical(plan: SilverPlan, counts: dict[str, int], rows: int, batch_id: int) -> None:
    """Stop before writing when a critical expectation fails on too much of the batch."""
    for rule in plan.suite.rules:
        if not rule.critical or not rows:
            continue
        percent = 100.0 * counts.get(f"expect.{rule.name}", 0) / rows
        limit = rule.max_unexpected_percent if rule.max_unexpected_percent is not None \
            else plan.critical_max_unexpected_percent
        if percent > limit:
            raise LakehouseError(
                ErrorCode.CRITICAL_RULE_FAILED,
                f"{plan.table.qualified_name} batch {batch_id}: critical expectation "
                f"{rule.name} failed on {percent:.1f}% of {rows:,} records (limit {limit:g}%)",
                hint=f"nothing of this batch was written; fix the producer or the suite "
                     f"({plan.suite.source_file}), then restart: the batch is retried",
                table=plan.table.qualified_name, rule=rule.name, batch_id=batch_id)


# -- I/O: lookups and writes ---------------------------------------------------------------

def existing_keys(plan: SilverPlan, valid: pa.Table, before_version: int | None = None
                  ) -> pa.Table:
    """Silver's rows holding any of the batch's keys, read only in the batch's event dates
    (and only those from bronze versions before ``before_version``, if given)."""
    empty = pa.table({plan.key: pa.array([], pa.string()),
                      **{c: pa.array([], t) for c, t in
                         (("_topic", pa.string()), ("_partition", pa.int32()),
                          ("_offset", pa.int64()))}})
    table = open_table(plan.uri, plan.storage_options)
    if table is None or valid.num_rows == 0:
        return empty
    dates = pc.unique(valid.column("event_date").drop_null())
    keys = pc.unique(valid.column(plan.key).drop_null())
    dataset = table.to_pyarrow_dataset()
    where = pc.field("event_date").isin(dates) & pc.field(plan.key).isin(keys)
    if before_version is not None:
        where = where & (pc.field("_bronze_version") < before_version)
    found = dataset.to_table(columns=[plan.key, *COORDINATES], filter=where)
    return found.cast(empty.schema) if found.num_rows else empty


def not_yet_quarantined(plan: SilverPlan, rows: pa.Table) -> pa.Table:
    """Drop rejected records quarantine already holds (same coordinates)."""
    table = open_table(plan.quarantine_uri, plan.storage_options)
    if table is None or rows.num_rows == 0:
        return rows
    versions = pc.unique(rows.column("_bronze_version"))
    held = table.to_pyarrow_dataset().to_table(
        columns=list(COORDINATES), filter=pc.field("_bronze_version").isin(versions))
    if held.num_rows == 0:
        return rows
    marked = lookup(rows.select(list(COORDINATES)),
                     held.append_column("_held", pa.array([True] * held.num_rows)),
                     list(COORDINATES))
    return rows.filter(pc.is_null(marked.column("_held")))


def quarantine_rows(rejected: pa.Table, batch_id: int, now: datetime) -> pa.Table:
    """Rejected records in the quarantine table's shape."""
    n = rejected.num_rows
    stamp = pa.array([now] * n, pa.timestamp("us", tz="UTC"))
    cols = {
        "event_id": rejected.column("event_id") if "event_id" in rejected.column_names
        else pa.nulls(n, pa.string()),
        "failed_rules": rejected.column("failed_rules"), "reasons": rejected.column("reasons"),
        "key": rejected.column("key"), "value": rejected.column("value"),
        **{c: rejected.column(c) for c in ("_topic", "_partition", "_offset",
                                           "_bronze_version", "_kafka_timestamp",
                                           "_ingested_at")},
        "batch_id": pa.array([batch_id] * n, pa.int64()), "quarantined_at": stamp,
        "resolved_at": pa.nulls(n, pa.timestamp("us", tz="UTC")),
        "resolution": pa.nulls(n, pa.string()),
    }
    return pa.table(cols).cast(QUARANTINE_SCHEMA)


def quality_rows(plan: SilverPlan, app_id: str, batch_id: int, results: list[RuleResult],
                 seconds: float, now: datetime) -> pa.Table:
    """GX's per-expectation results of one batch, as rows of ``silver._quality``."""
    return pa.Table.from_pylist([
        {"table": plan.table.qualified_name, "app_id": app_id, "batch_id": batch_id,
         "validated_at": now, "rule": r.rule, "expectation_type": r.expectation_type,
         "column": r.column, "critical": r.critical, "success": r.success,
         "element_count": r.element_count, "unexpected_count": r.unexpected_count,
         "unexpected_percent": r.unexpected_percent, "validation_seconds": seconds}
        for r in results], QUALITY_SCHEMA)


@dataclass
class Tables:
    """The four idempotent writers of one silver table."""

    silver: IdempotentAppender
    quarantine: IdempotentAppender
    quality: IdempotentAppender
    ledger: IdempotentAppender

    def __post_init__(self) -> None:
        self.binding = AppIdBinding(self.silver, self.quarantine, self.quality, self.ledger)


def ensure_tables(plan: SilverPlan, silver_schema: pa.Schema, app_id: str) -> Tables:
    """Create silver, its quarantine, ``_quality`` and ``_batches`` if missing."""
    opts = plan.storage_options
    ensure_table(plan.uri, silver_schema, ("event_date",), opts,
                 description=plan.table.description)
    ensure_table(plan.quarantine_uri, QUARANTINE_SCHEMA, (), opts,
                 description=f"records rejected by {plan.table.qualified_name}'s contract "
                             "or suite, with every rule they failed")
    ensure_table(plan.quality_uri, QUALITY_SCHEMA, (), opts,
                 description="Great Expectations results per silver micro-batch")
    ensure_table(plan.ledger_uri, LEDGER_SCHEMA, (), opts,
                 description="per-batch accounting: bronze = silver + quarantined + duplicates")
    return Tables(IdempotentAppender(plan.uri, app_id, ("event_date",), opts),
                  IdempotentAppender(plan.quarantine_uri, app_id, (), opts),
                  IdempotentAppender(plan.quality_uri, app_id, (), opts),
                  IdempotentAppender(plan.ledger_uri, app_id, (), opts))


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
    validation_seconds: float

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


def valid_rows(batch: pa.Table) -> pa.Table:
    """The records of a collected batch that failed no rule."""
    return batch.filter(pc.equal(pc.list_value_length(batch.column("failed_rules")), 0))


def route_batch(plan: SilverPlan, batch: pa.Table) -> Routed:
    """``route`` with silver's current holdings of the batch's keys."""
    columns = [c for c in batch.column_names if c not in RECORD_ONLY]
    return route(batch, existing_keys(plan, valid_rows(batch)), plan.key, columns)


def assertions(plan: SilverPlan, counts: dict[str, int], results: Sequence[RuleResult]
               ) -> list[Assertion]:
    """The batch's data-quality assertions: the contract, then each suite expectation (as
    Great Expectations judged it when it ran, else as routing counted it)."""
    contract_failures = sum(n for rule, n in counts.items() if not rule.startswith("expect."))
    out = [Assertion(f"contract:{plan.contract.name}", contract_failures == 0, None, "error")]
    judged = {r.rule: r.success for r in results}
    for rule in plan.suite.rules:
        success = judged.get(rule.name, counts.get(f"expect.{rule.name}", 0) == 0)
        out.append(Assertion(rule.name, success, rule.column,
                             "error" if rule.critical else "warning"))
    return out


def process_batch(plan: SilverPlan, tables: Tables, batch: pa.Table, batch_id: int,
                  validator: Validator | None, query_name: str,
                  run: BatchRun | None = None) -> tuple[BatchReport, BatchIO]:
    """Route, validate and write one collected batch (rows of ``for_routing``); what it
    did, and what it read and wrote (for lineage)."""
    started = time.monotonic()
    now = datetime.now(UTC)
    routed = route_batch(plan, batch)
    counts = rule_counts(batch)
    check_critical(plan, counts, batch.num_rows, batch_id)

    validation_started = time.monotonic()
    results = validator.validate(batch.select([r.column for r in plan.suite.rules]
                                              ).to_pandas()) if validator else []
    validation_seconds = time.monotonic() - validation_started

    versions = batch.column("_bronze_version")
    first, last = pc.min(versions).as_py(), pc.max(versions).as_py()
    metadata = {"lakehouse.query": query_name,
                BRONZE_VERSIONS: json.dumps({"from": first, "to": last}),
                **(run.commit_metadata() if run else {})}
    rejected = not_yet_quarantined(plan, routed.quarantine)
    quarantined = tables.quarantine.append(quarantine_rows(rejected, batch_id, now), batch_id,
                                           metadata)
    faults.crash_point(query_name, "after_quarantine_commit", batch_id)
    written = tables.silver.append(routed.silver, batch_id, metadata)
    faults.crash_point(query_name, "after_delta_commit", batch_id)
    writes = [Written(plan.uri, written.version, written.rows),
              Written(plan.quarantine_uri, quarantined.version, quarantined.rows)]
    if results:
        quality = tables.quality.append(quality_rows(plan, tables.quality.app_id, batch_id,
                                                     results, validation_seconds, now),
                                        batch_id, metadata)
        writes.append(Written(plan.quality_uri, quality.version, quality.rows))
    report = BatchReport(batch.num_rows, routed.silver_rows, routed.quarantine.num_rows,
                         routed.duplicates_in_batch, routed.duplicates_in_silver,
                         written.version, time.monotonic() - started, validation_seconds)
    ledger = pa.Table.from_pylist([{
        "table": plan.table.qualified_name, "kind": "stream", "app_id": tables.ledger.app_id,
        "batch_id": batch_id, "bronze_from_version": first,
        "bronze_to_version": last, "bronze_rows": report.bronze_rows,
        "silver_rows": report.silver_rows, "quarantined_rows": report.quarantined,
        "duplicates_in_batch": report.duplicates_in_batch,
        "duplicates_in_silver": report.duplicates_in_silver,
        "silver_version": report.silver_version, "finished_at": datetime.now(UTC),
        "seconds": report.seconds, "validation_seconds": validation_seconds}], LEDGER_SCHEMA)
    line = tables.ledger.append(ledger, batch_id, metadata)
    writes.append(Written(plan.ledger_uri, line.version, line.rows))
    read = Read(storage_dataset(plan.bronze_uri), batch.num_rows, (first, last),
                assertions=assertions(plan, counts, results))
    return report, BatchIO([read], writes)


# -- the streaming query -------------------------------------------------------------------

@dataclass
class SilverWriter:
    """The foreachBatch function of one silver query."""

    plan: SilverPlan
    tables: Tables
    validator: Validator | None
    printer: Printer
    query_name: str

    def __call__(self, df: DataFrame, batch_id: int, run: BatchRun) -> BatchIO:
        started = time.monotonic()
        batch = for_routing(classify(df, self.plan)).toArrow()
        if batch.num_rows == 0:
            return BatchIO([Read(storage_dataset(self.plan.bronze_uri), 0)])
        collected = time.monotonic() - started
        report, io = process_batch(self.plan, self.tables, batch, batch_id, self.validator,
                                   self.query_name, run)
        version = f"version {report.silver_version}" if report.silver_version is not None \
            else "no new silver rows"
        self.printer(f"[{self.query_name}] batch {batch_id}: {report.describe()} -> {version} "
                     f"in {time.monotonic() - started:.2f}s (parse+rules {collected:.2f}s, "
                     f"GX {report.validation_seconds:.2f}s)")
        return io


def resume_version(plan: SilverPlan, config: Config) -> int | None:
    """For a new checkpoint over a silver table with history: the first bronze version its
    ledger does not cover (nothing is processed, and counted, twice)."""
    if not config.warehouse.is_fresh_checkpoint(plan.table.qualified_name):
        return None
    done = _rows(plan.ledger_uri, plan.storage_options,
                 (pc.field("table") == plan.table.qualified_name) & (pc.field("kind") == "stream"),
                 ["bronze_to_version"])
    if done is None or done.num_rows == 0:
        return None
    return int(pc.max(done.column("bronze_to_version")).as_py()) + 1


def start_silver(spark: SparkSession, config: Config, table: SilverTable,
                 printer: Printer, lineage: Lineage | None = None) -> StreamingQuery:
    """Start the streaming query that builds one silver table from its bronze table."""
    plan = load_plan(config, table)
    query_name = table.qualified_name
    reader = (spark.readStream.format(DELTA_FORMAT).option("path", plan.bronze_uri)
              .option("maxRowsPerTrigger", str(config.silver.max_rows_per_trigger)))
    start = resume_version(plan, config)
    if start is not None:
        printer(f"[{query_name}] no checkpoint but the ledger covers bronze up to version "
                f"{start - 1}: continuing from version {start}")
        reader = reader.option("startingVersion", str(start))
    bronze = reader.load()
    classified = classify(bronze, plan)
    rows = classified.select(*silver_columns(classified),
                             *[F.col(s).alias(d) for s, d in LINEAGE])
    tables = ensure_tables(plan, to_arrow_schema(rows.schema), query_name)
    validator = Validator(plan.suite) if config.silver.gx_validation else None
    writer = SilverWriter(plan, tables, validator, printer, query_name)
    spec = QuerySpec(query_name, storage_dataset(plan.bronze_uri), plan.bronze_uri,
                     [plan.uri, plan.quarantine_uri, plan.quality_uri, plan.ledger_uri],
                     {plan.uri: lambda: rows})
    tracker = (lineage or Lineage.off(config)).query(spec, spark.version)
    return start_batches(bronze, config, query_name, writer, tables.binding, tracker)


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

    def describe(self) -> str:
        """One line for the terminal."""
        verdict = "holds" if self.holds else "DOES NOT HOLD"
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


def accounting(config: Config, table: SilverTable) -> Accounting:
    """The accounting identity of one silver table, from its tables and ledger."""
    plan = load_plan(config, table)
    opts = plan.storage_options
    # Stream lines count each bronze record once; rebuild lines (lakehouse replay) hold
    # the change a rebuild made to the duplicates of the range it re-routed.
    ledger = _rows(plan.ledger_uri, opts,
                   (pc.field("table") == table.qualified_name)
                   & pc.field("kind").isin(["stream", REBUILD]),
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
