"""Quarantine: see why records were rejected, and re-process them once fixed.

``silver.<table>_quarantine`` holds every rejected record: its raw key and value, its
bronze and Kafka coordinates, every rule it failed with a readable reason, the batch
that rejected it. ``replay`` runs chosen open records through the current contract and
suite (after either was fixed): the ones that now pass go to silver, deduplicated and
exactly once (idempotent by Kafka coordinates), and are marked ``replayed`` (or
``duplicate`` when silver already holds their event); the rest stay open.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from openlineage.client.uuid import generate_new_uuid
from pyspark.sql import SparkSession

from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta import IdempotentAppender, open_table
from lakehouse.io.delta_source import VERSION_COLUMN
from lakehouse.lineage.datasets import RUN_ID
from lakehouse.registry import SilverTable, discover_silver
from lakehouse.silver import (
    BRONZE_VERSIONS,
    COORDINATES,
    LEDGER_SCHEMA,
    QUARANTINE_SCHEMA,
    SilverPlan,
    classify,
    existing_keys,
    for_routing,
    load_plan,
    match_held,
    route_batch,
    valid_rows,
)

Printer = Callable[[str], None]


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


def find_table(name: str) -> SilverTable:
    """``orders``, ``silver.orders`` or ``silver.orders_quarantine`` -> the silver table."""
    key = name.removeprefix("silver.").removesuffix("_quarantine")
    tables = {t.name: t for t in discover_silver()}
    if key not in tables:
        raise LakehouseError(ErrorCode.UNKNOWN_SOURCE,
                             f"no silver table {name!r} (defined: {', '.join(sorted(tables))})",
                             hint="silver tables are defined in silver/*.py")
    return tables[key]


def select(rows: pa.Table, selection: Selection) -> pa.Table:
    """The open records matching the selection (pure)."""
    mask = pc.is_null(rows.column("resolution"))
    if selection.batches:
        mask = pc.and_(mask, pc.is_in(rows.column("batch_id"),
                                      pa.array(selection.batches, pa.int64())))
    if selection.rules:
        wanted = {r if "." in r else f"expect.{r}" for r in selection.rules}
        hits = [bool(wanted & set(rules)) for rules in rows.column("failed_rules").to_pylist()]
        mask = pc.and_(mask, pa.array(hits, pa.bool_()))
    if selection.coordinates:
        keys = {f"{t}:{p}:{o}" for t, p, o in selection.coordinates}
        coords = zip(*(rows.column(c).to_pylist() for c in COORDINATES), strict=True)
        mask = pc.and_(mask, pa.array([f"{t}:{p}:{o}" in keys for t, p, o in coords]))
    return rows.filter(mask)


def read_quarantine(plan: SilverPlan) -> pa.Table:
    """Every record of the table's quarantine (empty if it has none yet)."""
    dt = open_table(plan.quarantine_uri, plan.storage_options)
    if dt is None:
        return QUARANTINE_SCHEMA.empty_table()
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


def as_bronze(rows: pa.Table) -> pa.Table:
    """Quarantined records back in the shape of bronze rows (for ``classify``)."""
    return pa.table({
        "key": rows.column("key"), "value": rows.column("value"),
        "topic": rows.column("_topic"), "partition": rows.column("_partition"),
        "offset": rows.column("_offset"), "timestamp": rows.column("_kafka_timestamp"),
        "ingested_at": rows.column("_ingested_at"),
        VERSION_COLUMN: rows.column("_bronze_version"),
    })


def replay(config: Config, table: SilverTable, selection: Selection, spark: SparkSession,
           printer: Printer = print) -> ReplayReport:
    """Re-process the selected open records with the current contract and suite."""
    if selection.empty:
        raise LakehouseError(ErrorCode.QUARANTINE_NO_MATCH,
                             "say which records to replay: --rule, --batch, --record or --all")
    started = time.monotonic()
    plan = load_plan(config, table)
    chosen = select(read_quarantine(plan), selection)
    if chosen.num_rows == 0:
        raise LakehouseError(ErrorCode.QUARANTINE_NO_MATCH,
                             f"no open quarantined record of {table.qualified_name} matches",
                             hint=f"see them with: lakehouse quarantine list {table.name}")
    printer(f"re-checking {chosen.num_rows:,} quarantined records of {table.qualified_name} "
            f"against {plan.contract.source_file} and {plan.suite.source_file} ...")
    batch = for_routing(classify(spark.createDataFrame(as_bronze(chosen)), plan)).toArrow()
    routed = route_batch(plan, batch)
    writer = IdempotentAppender(plan.uri, f"{table.qualified_name}:quarantine-replay",
                                ("event_date",), plan.storage_options)
    done = writer.committed_version()
    batch_id = 0 if done is None else done + 1
    versions = chosen.column("_bronze_version")
    metadata = {"lakehouse.query": f"{table.qualified_name}:quarantine-replay",
                "lakehouse.replayed_records": chosen.num_rows,
                RUN_ID: str(generate_new_uuid()),
                BRONZE_VERSIONS: json.dumps({"from": pc.min(versions).as_py(),
                                             "to": pc.max(versions).as_py()})}
    written = writer.append(routed.silver, batch_id, metadata)
    passed = valid_rows(batch)
    outcome = _resolutions(plan, passed)
    _mark_resolved(plan, outcome)
    replayed = int(pc.sum(pc.equal(outcome.column("resolution"), "replayed")).as_py() or 0)
    report = ReplayReport(chosen.num_rows, replayed, outcome.num_rows - replayed,
                          chosen.num_rows - passed.num_rows, written.version,
                          time.monotonic() - started)
    _ledger_line(plan, writer.app_id, batch_id, report)
    return report


def _resolutions(plan: SilverPlan, passed: pa.Table) -> pa.Table:
    """For records that now pass: ``replayed`` if silver holds this very record (same
    coordinates), else ``duplicate`` (silver holds the event from another delivery)."""
    _, same = match_held(passed, existing_keys(plan, passed), plan.key)
    resolution = pc.if_else(same, "replayed", "duplicate")
    return passed.select(list(COORDINATES)).append_column("resolution", resolution)


def _mark_resolved(plan: SilverPlan, outcome: pa.Table) -> None:
    if outcome.num_rows == 0:
        return
    dt = open_table(plan.quarantine_uri, plan.storage_options)
    assert dt is not None  # records were selected from it
    now = pa.array([datetime.now(UTC)] * outcome.num_rows, pa.timestamp("us", tz="UTC"))
    source = outcome.append_column("resolved_at", now)
    (dt.merge(source, " AND ".join(f"t.{c} = s.{c}" for c in COORDINATES),
              source_alias="s", target_alias="t")
     .when_matched_update({"resolution": "s.resolution", "resolved_at": "s.resolved_at"})
     .execute())


def _ledger_line(plan: SilverPlan, app_id: str, batch_id: int, report: ReplayReport) -> None:
    line = pa.Table.from_pylist([{
        "table": plan.table.qualified_name, "kind": "replay", "app_id": app_id,
        "batch_id": batch_id, "bronze_rows": 0, "silver_rows": report.to_silver,
        "quarantined_rows": -(report.to_silver + report.duplicates),
        "duplicates_in_batch": 0, "duplicates_in_silver": report.duplicates,
        "silver_version": report.silver_version, "finished_at": datetime.now(UTC),
        "seconds": report.seconds, "validation_seconds": 0.0}], LEDGER_SCHEMA)
    IdempotentAppender(plan.ledger_uri, app_id, (), plan.storage_options).append(
        line, batch_id, {"lakehouse.query": app_id})
