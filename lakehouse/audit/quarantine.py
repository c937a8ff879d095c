"""Quarantine: see why records were rejected, and re-process them once fixed.

``silver.<table>_quarantine`` holds every rejected record: its raw key and value, its
bronze and Kafka coordinates, every rule it failed with a readable reason, the batch
that rejected it. ``list`` and ``show`` read it with delta-rs (no JVM). ``replay`` runs
chosen open records through the one silver batch path (``lakehouse.layers.routing.route``: the
current contract and suite, dedup, Great Expectations, the critical-rule stop) as a
Spark batch read from the quarantine table: the ones that now pass are appended to silver
under the table's write lock, as the stream's batches are, exactly once (app id
``<table>:quarantine-replay`` in the commit, and idempotent by Kafka coordinates), and
are marked ``replayed`` (or ``duplicate`` when silver holds their event from another
delivery) by a MERGE into the quarantine table; the rest stay open. Only counts reach the driver.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import reduce

import pyarrow as pa
import pyarrow.compute as pc
from openlineage.client.uuid import generate_new_uuid
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema

from lakehouse import graph
from lakehouse.batch import RUN_ID
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta import VERSION_COLUMN, merge, read_table
from lakehouse.io.delta_log import BatchCommit, WriteResult, latest_version, open_table
from lakehouse.layers.ledger import QUARANTINE_SCHEMA, BatchReport, LedgerKind
from lakehouse.layers.routing import COORDINATES, Routed, SilverPlan, load_plan, route
from lakehouse.layers.silver import Change, append_new, commit_change, next_batch, unchanged, writing
from lakehouse.printing import Printer
from lakehouse.registry import SilverTable


@dataclass(frozen=True)
class Selection:
    """Which open quarantined records an operator means."""

    rules: tuple[str, ...] = ()
    """Records that failed any of these rules (``expect.amount_in_range``, or just
    ``amount_in_range``; ``contract.type:amount``)."""
    batches: tuple[int, ...] = ()
    coordinates: tuple[tuple[str, int, int], ...] = ()
    """Kafka (topic, partition, offset) of single records."""
    everything: bool = False

    @property
    def empty(self) -> bool:
        """No criterion given (replay refuses that without ``everything``)."""
        return not (self.rules or self.batches or self.coordinates or self.everything)


def find_table(pipeline: graph.Graph, name: str) -> SilverTable:
    """``orders``, ``silver.orders`` or ``silver.orders_quarantine`` -> the silver table."""
    query = pipeline.query(
        "silver." + name.removeprefix("silver.").removesuffix("_quarantine"))
    assert isinstance(query.definition, SilverTable)
    return query.definition


def select(rows: pa.Table, selection: Selection) -> pa.Table:
    """The open records matching the selection (pure, on Arrow; ``matches`` is the same
    selection as a Spark condition)."""
    mask = pc.is_null(rows.column("resolution"))
    if selection.batches:
        mask = pc.and_(mask, pc.is_in(rows.column("batch_id"),
                                      pa.array(selection.batches, pa.int64())))
    if selection.rules:
        wanted = _wanted_rules(selection)
        hits = [bool(wanted & set(rules)) for rules in rows.column("failed_rules").to_pylist()]
        mask = pc.and_(mask, pa.array(hits, pa.bool_()))
    if selection.coordinates:
        keys = {f"{t}:{p}:{o}" for t, p, o in selection.coordinates}
        coords = zip(*(rows.column(c).to_pylist() for c in COORDINATES), strict=True)
        mask = pc.and_(mask, pa.array([f"{t}:{p}:{o}" in keys for t, p, o in coords]))
    return rows.filter(mask)


def _wanted_rules(selection: Selection) -> set[str]:
    return {r if "." in r else f"expect.{r}" for r in selection.rules}


def matches(selection: Selection) -> Column:
    """The open records matching the selection, as a condition on quarantine rows."""
    conditions: list[Column] = [F.col("resolution").isNull()]
    if selection.batches:
        conditions.append(F.col("batch_id").isin([int(b) for b in selection.batches]))
    if selection.rules:
        wanted = F.array(*[F.lit(r) for r in sorted(_wanted_rules(selection))])
        conditions.append(F.coalesce(F.arrays_overlap("failed_rules", wanted), F.lit(False)))
    if selection.coordinates:
        conditions.append(reduce(lambda a, b: a | b, [
            (F.col("_topic") == t) & (F.col("_partition") == int(p)) & (F.col("_offset") == int(o))
            for t, p, o in selection.coordinates]))
    return reduce(lambda a, b: a & b, conditions)


def read_quarantine(plan: SilverPlan) -> pa.Table:
    """Every record of the table's quarantine (empty if it has none yet), read by
    delta-rs for the CLI's ``list`` and ``show``."""
    dt = open_table(plan.quarantine_uri, plan.storage_options)
    if dt is None:
        return to_arrow_schema(QUARANTINE_SCHEMA).empty_table()
    return dt.to_pyarrow_table()


@dataclass(frozen=True)
class RuleCount:
    """How many open records failed one rule, with one example reason."""

    rule: str
    records: int
    example: str


def rule_summary(rows: pa.Table) -> list[RuleCount]:
    """Open records per failed rule, most frequent first (pure)."""
    counts: dict[str, int] = {}
    examples: dict[str, str] = {}
    open_rows = rows.filter(pc.is_null(rows.column("resolution")))
    for rules, reasons in zip(open_rows.column("failed_rules").to_pylist(),
                              open_rows.column("reasons").to_pylist(), strict=True):
        for rule, reason in zip(rules, reasons, strict=False):
            counts[rule] = counts.get(rule, 0) + 1
            examples.setdefault(rule, reason)
    return [RuleCount(r, n, examples[r]) for r, n in
            sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


@dataclass(frozen=True)
class ReplayReport:
    """What a quarantine replay did."""

    selected: int
    to_silver: int
    duplicates: int
    still_failing: int
    silver_version: int | None
    seconds: float

    def describe(self) -> str:
        """One line for the terminal."""
        return (f"replayed {self.selected:,} quarantined records: {self.to_silver:,} -> silver, "
                f"{self.duplicates:,} duplicates of events silver holds, "
                f"{self.still_failing:,} still failing (left in quarantine)")


def as_bronze(rows: DataFrame) -> DataFrame:
    """Quarantined records back in the shape of bronze rows (for ``route``), with the
    bronze version each came from as ``_commit_version``."""
    return rows.select(
        "key", "value", F.col("_topic").alias("topic"), F.col("_partition").alias("partition"),
        F.col("_offset").alias("offset"), F.col("_kafka_timestamp").alias("timestamp"),
        F.col("_ingested_at").alias("ingested_at"),
        F.col("_bronze_version").alias(VERSION_COLUMN))


def replay(pipeline: graph.Graph, table: SilverTable, selection: Selection, spark: SparkSession,
           printer: Printer = print) -> ReplayReport:
    """Re-process the selected open records with the current contract and suite."""
    if selection.empty:
        raise LakehouseError(ErrorCode.QUARANTINE_NO_MATCH,
                             "say which records to replay: --rule, --batch, --record or --all")
    started = time.monotonic()
    plan = load_plan(pipeline, table)
    version = latest_version(plan.quarantine_uri)
    nothing = LakehouseError(ErrorCode.QUARANTINE_NO_MATCH,
                             f"no open quarantined record of {table.qualified_name} matches",
                             hint=f"see them with: lakehouse quarantine list {table.name}")
    if version is None or open_table(plan.uri, plan.storage_options) is None:
        raise nothing
    # One snapshot of the quarantine: the selection stays the same however often Spark
    # evaluates it, whatever the stream appends meanwhile.
    chosen = read_table(spark, plan.quarantine_uri, version).filter(matches(selection))
    selected = chosen.count()
    if selected == 0:
        raise nothing
    printer(f"re-checking {selected:,} quarantined records of {table.qualified_name} "
            f"against {plan.contract.source_file} and {plan.suite.source_file} ...")
    app = f"{table.qualified_name}:quarantine-replay"
    batch_id = next_batch(plan, app)
    # The stream's silver batches wait while the replay finds which records are new and
    # appends them (``lakehouse.layers.silver.writing``).
    with writing(plan):
        routed = route(plan, as_bronze(chosen), batch_id)
        outcome = resolutions(plan, routed).persist()
        try:
            counts = {r["resolution"]: int(r["n"]) for r in outcome.groupBy("resolution")
                      .agg(F.count(F.lit(1)).alias("n")).collect()}
            replayed, duplicates = counts.get("replayed", 0), counts.get("duplicate", 0)
            columns = read_table(spark, plan.uri).schema
            commit = BatchCommit(app, batch_id, {
                "lakehouse.query": app, "lakehouse.replayed_records": routed.rows,
                RUN_ID: str(generate_new_uuid())})

            def line(silver: WriteResult, _: WriteResult) -> BatchReport:
                return BatchReport(0, replayed, -(replayed + duplicates), 0, duplicates,
                                   silver.version, time.monotonic() - started)

            report, _ = commit_change(plan, Change(
                LedgerKind.REPLAY, commit, routed.versions, line,
                (lambda c: append_new(plan, routed, c, columns)) if routed.new_rows
                else unchanged,
                (lambda c: _mark_resolved(plan, outcome, c)) if replayed + duplicates
                else unchanged, routed.results))
        finally:
            outcome.unpersist()
            routed.release()
    return ReplayReport(routed.rows, replayed, duplicates, routed.quarantined,
                        report.silver_version, report.seconds)


def resolutions(plan: SilverPlan, routed: Routed) -> DataFrame:
    """Coordinates and resolution of the records that now pass: ``replayed`` where the
    record is the one silver holds (or will, once the batch's new rows are in: the first
    delivery of a key silver does not hold yet), else ``duplicate`` (silver holds the
    event from another delivery)."""
    kept = (routed.candidates.filter(~F.col("_held") | F.col("_same"))
            .select(*COORDINATES, F.lit("replayed").alias("resolution")))
    passed = routed.records.filter(F.size("failed_rules") == 0).select(*COORDINATES)
    return passed.join(kept, list(COORDINATES), "left").select(
        *COORDINATES, F.coalesce("resolution", F.lit("duplicate")).alias("resolution"))


def _mark_resolved(plan: SilverPlan, outcome: DataFrame, commit: BatchCommit) -> WriteResult:
    """Set ``resolution`` and ``resolved_at`` of the replayed records in the quarantine
    table (a MERGE on the Kafka coordinates; open records only)."""
    source = outcome.withColumn("resolved_at", F.current_timestamp())
    return merge(source, plan.quarantine_uri,
                 " AND ".join(f"t.{c} = s.{c}" for c in COORDINATES),
                 lambda m: m.whenMatchedUpdate(
                     "t.resolution IS NULL",
                     {"resolution": "s.resolution", "resolved_at": "s.resolved_at"}),
                 commit)
