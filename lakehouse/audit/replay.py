"""Replay: rebuild a silver or gold table from its inputs as they are now, e.g. after a
contract, a suite or a gold definition was fixed.

Silver: the bronze records of versions ``first..last`` (read as a batch from bronze's
change data feed, exactly the rows the stream sees) go through the one silver batch path,
``lakehouse.layers.routing.route``, with the current contract and suite (a failed critical
expectation stops it with LH-QUALITY-001 before anything is written). In the same table,
the rows those versions produced are replaced, in silver and in quarantine, each by one
overwrite-where commit (delta-spark, from the executors); ``--into NAME`` writes the
rebuilt table (and its quarantine) beside it instead, for comparison first. Gold: the
table (and its state) is recomputed whole from silver as of its latest version (Spark)
and replaced in one commit each.

Exactly once: a replay is batch ``n`` of writer ``<table>:replay``. In the same table its
ledger line is written first, with the range and the adjustment it makes to the
accounting; then every table commit. A replay that died half way is resumed (same
range, same result) by running it again; each table it had already committed is
skipped (``lakehouse.io.delta``). Commits record the input range (bronze or
silver versions) and a run id, so ``explain`` and ``history`` see replays like stream
batches. Only counts reach the driver.

The table's own streaming query must be stopped while it is replayed. A gold replay
removes that query's checkpoint: the next run continues after the silver version the
replay covered (from the commit metadata), so nothing is counted twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from dataclasses import replace as with_fields
from datetime import datetime
from typing import Any

import pyarrow.compute as pc
from openlineage.client.uuid import generate_new_uuid
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import graph
from lakehouse.batch import BRONZE_VERSIONS, RUN_ID, SILVER_VERSIONS
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.graph import Graph
from lakehouse.io.checkpoints import move_aside
from lakehouse.io.delta import read_appended, read_table, replace
from lakehouse.io.delta_log import MERGE_KEYS, BatchCommit, last_batch, latest_version, open_table
from lakehouse.io.kafka_admin import offsets_at
from lakehouse.io.storage import is_dir, remove_tree
from lakehouse.layers.ledger import BatchReport, LedgerKind
from lakehouse.layers.routing import COORDINATES, Routed, SilverPlan, load_plan, quarantine_rows, route
from lakehouse.layers.silver import Change, LedgerLine, commit_change, next_batch
from lakehouse.printing import Printer
from lakehouse.registry import BronzeTable, GoldTable, SilverTable


@dataclass(frozen=True)
class SilverReplay:
    """What a silver replay did."""

    table: str
    target: str
    first: int
    last: int
    bronze_rows: int
    silver_before: int
    silver_after: int
    quarantined_before: int
    quarantined_after: int
    to_silver: int
    """Records of the range that were quarantined and are now in silver."""
    to_quarantine: int
    """Records of the range that were in silver and are now quarantined."""
    seconds: float
    resumed: bool = False

    def describe(self) -> str:
        """The outcome in two lines."""
        return (f"{self.table}: bronze versions {self.first}..{self.last} ({self.bronze_rows:,} "
                f"records) replayed into {self.target} in {self.seconds:.1f}s"
                + (" (resumed)" if self.resumed else "") + "\n"
                f"  silver {self.silver_before:,} -> {self.silver_after:,}, quarantined "
                f"{self.quarantined_before:,} -> {self.quarantined_after:,}; "
                f"{self.to_silver:,} moved quarantine -> silver, {self.to_quarantine:,} "
                f"silver -> quarantine")


def first_version_at(uri: str, at: datetime, storage_options: dict[str, str]) -> int:
    """The first version of a table committed at or after ``at``."""
    table = open_table(uri, storage_options)
    later = sorted(int(c["version"]) for c in (table.history() if table else [])
                   if int(c["timestamp"]) >= at.timestamp() * 1000)
    if not later:
        raise LakehouseError(ErrorCode.REPLAY_NOTHING, f"no version of {uri} is as recent "
                             f"as {at.isoformat()}", hint="pick an earlier --from-time")
    return later[0]


def _in_range(first: int, last: int) -> str:
    return f"_bronze_version >= {first} AND _bronze_version <= {last}"


@dataclass(frozen=True)
class _Before:
    """The range's rows in silver and quarantine before a replay (counts only)."""

    silver: int
    open_quarantined: int
    resolved_duplicates: int
    """Quarantined records of the range a quarantine replay found to be duplicates."""
    to_silver: int
    to_quarantine: int


def _before(spark: SparkSession, plan: SilverPlan, routed: Routed, first: int, last: int
            ) -> _Before:
    """What the range holds now, and how many records the rebuilt rows move between
    silver and quarantine (Spark jobs; counts reach the driver)."""
    where = F.expr(_in_range(first, last))
    coords = list(COORDINATES)
    silver_old = read_table(spark, plan.uri).filter(where).select(*coords)
    quarantine_old = (read_table(spark, plan.quarantine_uri).filter(where)
                      .select(*coords, "resolution"))
    open_old = quarantine_old.filter(F.col("resolution").isNull()).select(*coords)
    marks = quarantine_old.agg(
        F.count(F.when(F.col("resolution").isNull(), 1)).alias("open"),
        F.count(F.when(F.col("resolution") == "duplicate", 1)).alias("dups")).first()
    assert marks is not None
    return _Before(
        silver_old.count(), int(marks["open"]), int(marks["dups"]),
        open_old.join(routed.silver.select(*coords), coords, "left_semi").count(),
        silver_old.join(routed.quarantine.select(*coords), coords, "left_semi").count())


def replay_silver(spark: SparkSession, pipeline: graph.Graph, table: SilverTable,
                  first: int | None = None, into: str | None = None,
                  printer: Printer = print) -> SilverReplay:
    """Rebuild ``table`` (or a side table ``silver.<into>``) from bronze versions
    ``first``.. (default: all) with the current contract and suite."""
    started = time.monotonic()
    plan = load_plan(pipeline, table)
    opts = plan.storage_options
    app = f"{table.qualified_name}:replay"
    if open_table(plan.uri, opts) is None or open_table(plan.quarantine_uri, opts) is None:
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND,
                             f"{table.qualified_name} does not exist yet",
                             hint="run the pipelines first (lakehouse run --until-idle)")
    side = _side_uris(plan, into) if into else None
    pending = None if into else _pending(plan, app)
    if pending is not None:
        n, first, last = pending
        printer(f"[{table.qualified_name}] replay {n} stopped half way: resuming it "
                f"(bronze versions {first}..{last})")
    else:
        n = next_batch(plan, app)
        newest = latest_version(plan.bronze_uri)
        if newest is None:
            raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND,
                                 f"bronze.{table.bronze} does not exist yet",
                                 hint="run the pipelines first (lakehouse run --until-idle)")
        last = newest
        first = 0 if first is None else first
    if first > last:
        raise LakehouseError(ErrorCode.REPLAY_NOTHING,
                             f"bronze has no version {first} (latest {last})")
    printer(f"[{table.qualified_name}] re-checking the bronze records of versions "
            f"{first}..{last} against {plan.contract.source_file} and "
            f"{plan.suite.source_file} ...")
    # Bronze's appending commits of the range, each row with its version: what the stream reads.
    routed = route(plan, read_appended(spark, plan.bronze_uri, first, last), n,
                   before_version=first)
    try:
        before = _before(spark, plan, routed, first, last)
        quarantined = quarantine_rows(routed.quarantine, plan.key, n)
        commit = BatchCommit(app, n, {
            "lakehouse.query": app, BRONZE_VERSIONS: json.dumps({"from": first, "to": last}),
            RUN_ID: str(generate_new_uuid()), "lakehouse.replay": n})
        report = SilverReplay(
            table.qualified_name, f"silver.{into}" if into else table.qualified_name, first,
            last, routed.rows, before.silver, routed.new_rows, before.open_quarantined,
            routed.quarantined, before.to_silver, before.to_quarantine, 0.0, pending is not None)
        if side is not None:
            _write_side_tables(spark, plan, side, routed, quarantined, first, commit)
        else:
            where = _in_range(first, last)
            commit_change(plan, Change(
                LedgerKind.REBUILD, commit, (first, last), _ledger_line(routed, before, started),
                lambda c: replace(routed.silver, plan.uri, c, where, ("event_date",)),
                lambda c: replace(quarantined, plan.quarantine_uri, c, where),
                routed.results, ledger_first=True))
    finally:
        routed.release()
    return with_fields(report, seconds=time.monotonic() - started)


def _ledger_line(routed: Routed, before: _Before, started: float
                 ) -> LedgerLine:
    """The replay's ``rebuild`` line: no bronze rows of its own, and the change it makes
    to silver, open quarantine and (as ``duplicates_in_silver``) the duplicates, so the
    accounting identity holds once the tables are replaced."""
    adjustment = (before.silver - routed.new_rows) \
        + (before.open_quarantined - routed.quarantined) + before.resolved_duplicates
    return lambda *_: BatchReport(0, routed.new_rows - before.silver,
                                  routed.quarantined - before.open_quarantined, 0, adjustment,
                                  None, time.monotonic() - started)


def _pending(plan: SilverPlan, app: str) -> tuple[int, int, int] | None:
    """(n, first, last) of a replay whose ledger line is written but whose silver or
    quarantine commit is not."""
    opts = plan.storage_options
    n = last_batch(plan.ledger_uri, app)
    if n is None:
        return None
    done = [last_batch(uri, app) for uri in (plan.uri, plan.quarantine_uri)]
    if all(d is not None and d >= n for d in done):
        return None
    ledger = open_table(plan.ledger_uri, opts)
    assert ledger is not None
    line = ledger.to_pyarrow_dataset().to_table(
        columns=["bronze_from_version", "bronze_to_version"],
        filter=(pc.field("app_id") == app) & (pc.field("batch_id") == n)).to_pylist()[0]
    return n, int(line["bronze_from_version"]), int(line["bronze_to_version"])


def _side_uris(plan: SilverPlan, into: str) -> tuple[str, str]:
    """``silver.<into>`` and ``silver.<into>_quarantine``; an error if either exists."""
    root = plan.uri.rsplit("/", 1)[0]
    uris = (f"{root}/{into}", f"{root}/{into}_quarantine")
    for uri in uris:
        if open_table(uri, plan.storage_options) is not None:
            raise LakehouseError(ErrorCode.REPLAY_TARGET_EXISTS,
                                 f"silver.{uri.rsplit('/', 1)[1]} exists already",
                                 hint="pick another --into name, or drop that table first")
    return uris


def _write_side_tables(spark: SparkSession, plan: SilverPlan, side: tuple[str, str],
                       routed: Routed, quarantined: DataFrame, first: int,
                       commit: BatchCommit) -> None:
    """``silver.<into>`` and its quarantine: the rows before ``first`` as they are, plus
    the rebuilt ones (batch 0 of the replay writer in each new table)."""
    earlier: Column = F.col("_bronze_version") < first
    side_commit = BatchCommit(commit.app_id, 0, commit.metadata)
    for source, rebuilt, target, parts in ((plan.uri, routed.silver, side[0], ("event_date",)),
                                           (plan.quarantine_uri, quarantined, side[1], ())):
        kept = read_table(spark, source).filter(earlier)
        replace(kept.unionByName(rebuilt), target, side_commit, None, parts)


@dataclass(frozen=True)
class GoldReplay:
    """What a gold replay did."""

    table: str
    target: str
    silver_version: int
    rows_before: int
    rows_after: int
    seconds: float

    def describe(self) -> str:
        """The outcome in one line."""
        return (f"{self.table}: recomputed from silver as of version {self.silver_version} "
                f"into {self.target} in {self.seconds:.1f}s ({self.rows_before:,} -> "
                f"{self.rows_after:,} rows)")


def replay_gold(spark: SparkSession, pipeline: graph.Graph, table: GoldTable,
                into: str | None = None, printer: Printer = print) -> GoldReplay:
    """Recompute ``table`` (and its state) whole from silver as it is now."""
    from lakehouse.aggregates import partial, recompute, with_rollup_keys
    from lakehouse.layers.gold import ensure_gold_tables, load_gold_plan, schemas, stamped
    started = time.monotonic()
    plan = load_gold_plan(pipeline, table)
    opts, agg = plan.storage_options, plan.agg
    silver_table = open_table(plan.silver_uri, opts)
    if silver_table is None:
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND,
                             f"{table.qualified_name} reads silver.{table.silver}, which does "
                             "not exist yet", hint="run the pipelines first")
    version = silver_table.version()
    target_uri = plan.uri if not into else f"{plan.uri.rsplit('/', 1)[0]}/{into}"
    if into and open_table(target_uri, opts) is not None:
        raise LakehouseError(ErrorCode.REPLAY_TARGET_EXISTS, f"gold.{into} exists already",
                             hint="pick another --into name")
    silver = read_table(spark, plan.silver_uri, version)
    ensure_gold_tables(plan, schemas(spark, agg, silver.schema))
    printer(f"[{table.qualified_name}] recomputing from silver.{table.silver} version "
            f"{version} ...")
    app = f"{table.qualified_name}:replay"
    before = open_table(target_uri, opts)
    done = last_batch(target_uri, app)
    n = 0 if done is None else done + 1
    metadata: dict[str, Any] = {
        "lakehouse.query": app, RUN_ID: str(generate_new_uuid()),
        SILVER_VERSIONS: json.dumps({"from": 0, "to": version}),
        MERGE_KEYS: json.dumps(agg.output_keys), "lakehouse.replay": n}
    rows_before = 0 if before is None else int(before.count())
    output = stamped(recompute(agg, silver))
    written = replace(output, target_uri, BatchCommit(app, n, metadata))
    if plan.state_uri is not None and not into:
        state = stamped(with_rollup_keys(agg, partial(agg, silver)))
        replace(state, plan.state_uri,
                BatchCommit(app, n, {**metadata, MERGE_KEYS: json.dumps(agg.keys)}))
    if not into:
        checkpoint = plan.checkpoint
        if is_dir(checkpoint):
            remove_tree(checkpoint)
            printer(f"[{table.qualified_name}] removed its checkpoint: the next run continues "
                    f"after silver version {version}")
    rows_after = written.rows if written.written else output.count()
    return GoldReplay(table.qualified_name, f"gold.{into}" if into else table.qualified_name,
                      version, rows_before, rows_after, time.monotonic() - started)


@dataclass(frozen=True)
class BronzeReplay:
    """What a bronze reset did."""

    table: str
    start: dict[int, int]
    rows_before: int
    rows_after: int
    seconds: float

    def describe(self) -> str:
        """The outcome in one line."""
        starts = " ".join(f"p{p}:{o}" for p, o in sorted(self.start.items()))
        return (f"{self.table}: re-read Kafka from {starts}; {self.rows_after - self.rows_before:,} "
                f"missing records landed ({self.rows_before:,} -> {self.rows_after:,} rows) "
                f"in {self.seconds:.1f}s; records the table held were skipped")


def kafka_start(config: Config, topic: str, start: dict[int, int] | datetime
                ) -> dict[int, int]:
    """Per partition, the offset to re-read from: as given, or the first record at or
    after an instant; an error if Kafka no longer retains it."""
    at = int(start.timestamp() * 1000) if isinstance(start, datetime) else None
    marks, found = offsets_at(config.kafka.bootstrap_servers, config.kafka.client_properties,
                              topic, at)
    offsets = found if isinstance(start, datetime) else \
        {p: start.get(p, high) for p, (_, high) in marks.items()}
    gone = {p: marks[p][0] for p, o in offsets.items() if o < marks[p][0]}
    if gone:
        raise LakehouseError(
            ErrorCode.REPLAY_NOT_RETAINED,
            f"Kafka no longer retains the offsets asked for in {topic}: "
            + ", ".join(f"partition {p} starts at {low} now" for p, low in sorted(gone.items())),
            hint="replay from offsets Kafka still holds (or from silver/gold, which keep "
                 "what bronze landed)", topic=topic)
    return offsets


def replay_bronze(pipeline: Graph, table: BronzeTable, start: dict[int, int] | datetime,
                  printer: Printer = print) -> BronzeReplay:
    """Reset a bronze table's query to earlier Kafka offsets and run it until idle,
    landing only the records the table does not hold; its old checkpoint is kept aside.
    The query starts from Spark's ``startingOffsets`` JSON with every partition's offset
    (``layers.bronze.start_bronze(..., reset_to=...)``)."""
    from lakehouse.runner import run
    started, config = time.monotonic(), pipeline.config
    topic = config.source(table.source).topic
    offsets = kafka_start(config, topic, start)
    opts = dict(config.warehouse.storage_options)
    uri = pipeline.node(table.qualified_name).uri
    current = open_table(uri, opts)
    before = 0 if current is None else int(current.count())
    aside = move_aside(pipeline.query(table.qualified_name).checkpoint, "before-reset")
    if aside:
        printer(f"[{table.qualified_name}] old checkpoint kept at {aside}")
    reset = json.dumps({topic: {str(p): o for p, o in offsets.items()}})
    run(pipeline, until_idle=True, tables=[table.qualified_name], printer=printer,
        bronze_reset={table.qualified_name: reset})
    after = open_table(uri, opts)
    return BronzeReplay(table.qualified_name, offsets, before,
                        0 if after is None else int(after.count()), time.monotonic() - started)
