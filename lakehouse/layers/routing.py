"""Silver's routing of one batch: every bronze record judged against its table's contract
and suite, deduplicated, and counted, with only the counts reaching the driver.

``load_plan`` loads what a silver table needs (contract, suite, tables from the graph);
``classify`` and the functions after it are pure Spark transformations; ``route`` runs
them on a batch and stops on a critical expectation before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse import graph
from lakehouse.batch import (
    Assertion,
    EventTimes,
)
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta import (
    VERSION_COLUMN,
    read_files,
)
from lakehouse.io.schema_registry import SchemaRegistry
from lakehouse.observe.latency import event_time_aggregates, event_times
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
from lakehouse.quality.in_force import RulesInForce
from lakehouse.quality.rules import RuleResult, Suite, apply_rules, load_suite, results, statistics
from lakehouse.registry import SilverTable, bronze_source
from lakehouse.schemas import registry_for
from lakehouse.steps import step

# Bronze columns carried into silver (renamed) so every row names the record it came from,
# and when Kafka took it (gold's event -> gold latency starts there).
LINEAGE = (("topic", "_topic"), ("partition", "_partition"), ("offset", "_offset"),
           (VERSION_COLUMN, "_bronze_version"), ("ingested_at", "_ingested_at"),
           ("timestamp", "_kafka_timestamp"))
COORDINATES = ("_topic", "_partition", "_offset")
# Columns of a routed batch that describe the raw record, not the silver row.
RECORD_ONLY = frozenset({"key", "value", "failed_rules", "reasons"})


BRONZE_COLUMNS = frozenset({"key", "value", "topic", "partition", "offset", "timestamp",
                            "timestamp_type", "headers", "ingested_at", "ingest_date",
                            VERSION_COLUMN})


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
    rules: RulesInForce
    """The contract and suite files as read, recorded in every commit by their hashes."""
    rules_uri: str
    """The warehouse's archive of contracts and suites (``_system.rules``)."""
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)
    pii_key: bytes = field(default=b"", repr=False)
    """The key of the pseudonyms of the contract's pii fields (empty if it has none)."""
    avro: AvroSource | None = None
    """Where an Avro source's writer schemas are (None: the source is JSON)."""
    checkpoint: str = ""
    """The checkpoint of the table's streaming query."""
    table_properties: dict[str, str] = field(default_factory=dict)
    """Delta properties its tables are created with (the audit horizon's retention)."""

    @property
    def key(self) -> str:
        """The dedup key (the contract's event id)."""
        return self.contract.key


def load_plan(pipeline: graph.Graph, table: SilverTable) -> SilverPlan:
    """Load the table's contract and suite (errors name the file); its tables and
    checkpoint are the graph's."""
    config = pipeline.config
    folder = Path(config.expectations_dir)
    files = (folder / f"{table.contract}.contract.yaml", folder / f"{table.contract}.suite.json")
    contract = load_contract(files[0])
    suite = load_suite(files[1], tuple(f.name for f in contract.fields))
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
                      RulesInForce.read(*files), wh.table_uri("_system", "rules"),
                      dict(wh.storage_options),
                      pii_key(config) if contract.pii_fields else b"", avro,
                      pipeline.query(table.qualified_name).checkpoint,
                      config.retention.delta_properties)


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


def conform(rows: DataFrame, table: T.StructType) -> DataFrame:
    """``rows`` with the table's columns in its order: a column the contract no longer
    names is null."""
    present = set(rows.columns)
    return rows.select(*[F.col(f.name) if f.name in present
                         else F.lit(None).cast(f.dataType).alias(f.name)
                         for f in table.fields])


def silver_rows(classified: DataFrame) -> DataFrame:
    """Classified records as silver rows: business columns, then lineage."""
    return classified.select(*silver_columns(classified),
                             *[F.col(s).alias(d) for s, d in LINEAGE])
