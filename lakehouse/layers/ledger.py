"""Silver's ledger (``silver._batches``) and expectation results (``silver._quality``):
where every bronze record of every batch went, and the accounting identity
``bronze = silver + quarantined + duplicates`` read back from the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import types as T

from lakehouse import graph
from lakehouse.io.delta import arrow_schema
from lakehouse.io.delta_log import open_table
from lakehouse.layers.routing import SilverPlan, load_plan
from lakehouse.quality.rules import RuleResult
from lakehouse.registry import SilverTable


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
