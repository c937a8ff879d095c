"""Replay: rebuild a silver or gold table from its inputs as they are now, e.g. after a
contract, a suite or a gold definition was fixed.

Silver: the bronze records of versions ``first..last`` are classified and routed again
with the current contract and suite (deduplicated against the silver rows from earlier
bronze versions, first delivery in bronze order winning, as the stream does). In the
same table, the rows those versions produced are replaced, in silver and in quarantine,
each by one overwrite-where commit; ``--into NAME`` writes the rebuilt table (and its
quarantine) beside it instead, for comparison first. Gold: the table (and its state) is
recomputed whole from silver as of its latest version and replaced in one commit each.

Exactly once: a replay is batch ``n`` of writer ``<table>:replay``. In the same table its
ledger line is written first, with the range and the adjustment it makes to the
accounting; then every table commit carries ``txn(<table>:replay, n)``. A replay that
died half way is resumed (same range, same result) by running it again; each table it
had already committed is skipped. Commits record the input range (bronze or silver
versions) and a run id, so ``explain`` and ``history`` see replays like stream batches.

The table's own streaming query must be stopped while it is replayed. A gold replay
removes that query's checkpoint: the next run continues after the silver version the
replay covered (from the commit metadata), so nothing is counted twice.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from openlineage.client.uuid import generate_new_uuid
from pyspark.sql import SparkSession

from lakehouse import faults
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta import MERGE_KEYS, IdempotentAppender, open_table, replace_rows
from lakehouse.io.delta_source import DeltaLog, read_file, table_arrow_schema
from lakehouse.lineage.datasets import BRONZE_VERSIONS, RUN_ID, SILVER_VERSIONS
from lakehouse.registry import BronzeTable, GoldTable, SilverTable
from lakehouse.silver import (
    COORDINATES,
    LEDGER_SCHEMA,
    REBUILD,
    RECORD_ONLY,
    SilverPlan,
    classify,
    existing_keys,
    for_routing,
    load_plan,
    quarantine_rows,
    route,
    valid_rows,
)

Printer = Callable[[str], None]


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


def read_bronze(uri: str, first: int, last: int) -> pa.Table:
    """Bronze records of versions ``first..last`` with the version that added each."""
    log = DeltaLog(uri)
    schema = table_arrow_schema(uri)
    batches: list[pa.RecordBatch] = []
    for v in range(first, last + 1):
        commit = log.commit(v)
        if commit.removes_data:
            raise LakehouseError(
                ErrorCode.REPLAY_NOTHING,
                f"bronze version {v} of {uri} ({commit.operation}) rewrites data; bronze "
                "replays need append-only versions", hint="replay from a later version")
        for f in commit.added:
            batches.extend(read_file(uri, f, schema))
    return pa.Table.from_batches(batches, schema)


def _coords(data: pa.Table) -> set[tuple[str, int, int]]:
    return set(zip(*(data.column(c).to_pylist() for c in COORDINATES), strict=True))


def replay_silver(spark: SparkSession, config: Config, table: SilverTable,
                  first: int | None = None, into: str | None = None,
                  printer: Printer = print) -> SilverReplay:
    """Rebuild ``table`` (or a side table ``silver.<into>``) from bronze versions
    ``first``.. (default: all) with the current contract and suite."""
    started = time.monotonic()
    plan = load_plan(config, table)
    opts = plan.storage_options
    app = f"{table.qualified_name}:replay"
    ledger = IdempotentAppender(plan.ledger_uri, app, (), opts)
    pending = None if into else _pending(plan, app)
    if pending is not None:
        n, first, last = pending
        printer(f"[{table.qualified_name}] replay {n} stopped half way: resuming it "
                f"(bronze versions {first}..{last})")
    else:
        done = ledger.committed_version()
        n = 0 if done is None else done + 1
        last = DeltaLog(plan.bronze_uri).latest_version()
        first = 0 if first is None else first
    if first > last:
        raise LakehouseError(ErrorCode.REPLAY_NOTHING,
                             f"bronze has no version {first} (latest {last})")
    bronze = read_bronze(plan.bronze_uri, first, last)
    printer(f"[{table.qualified_name}] re-checking {bronze.num_rows:,} bronze records of "
            f"versions {first}..{last} against {plan.contract.source_file} and "
            f"{plan.suite.source_file} ...")
    batch = for_routing(classify(spark.createDataFrame(bronze), plan)).toArrow()
    columns = [c for c in batch.column_names if c not in RECORD_ONLY]
    routed = route(batch, existing_keys(plan, valid_rows(batch), before_version=first),
                   plan.key, columns)
    now = datetime.now(UTC)
    quarantined = quarantine_rows(routed.quarantine, n, now)
    in_range = (pc.field("_bronze_version") >= first) & (pc.field("_bronze_version") <= last)
    old_silver = open_table(plan.uri, opts)
    old_quarantine = open_table(plan.quarantine_uri, opts)
    silver_old = old_silver.to_pyarrow_dataset().to_table(
        columns=list(COORDINATES), filter=in_range) if old_silver else routed.silver.slice(0, 0)
    quarantine_old = old_quarantine.to_pyarrow_dataset().to_table(
        columns=[*COORDINATES, "resolution"], filter=in_range) \
        if old_quarantine else quarantined.slice(0, 0)
    open_old = quarantine_old.filter(pc.is_null(quarantine_old.column("resolution")))
    dup_resolved = quarantine_old.num_rows - open_old.num_rows \
        - int(pc.sum(pc.equal(quarantine_old.column("resolution"), "replayed")).as_py() or 0)
    new_silver = _coords(routed.silver)
    metadata = {"lakehouse.query": app, BRONZE_VERSIONS: json.dumps({"from": first, "to": last}),
                RUN_ID: str(generate_new_uuid()), "lakehouse.replay": n}
    report = SilverReplay(
        table.qualified_name, f"silver.{into}" if into else table.qualified_name, first, last,
        bronze.num_rows, silver_old.num_rows, routed.silver.num_rows, open_old.num_rows,
        quarantined.num_rows, len(_coords(open_old) & new_silver),
        len(_coords(silver_old) & _coords(quarantined)), 0.0, pending is not None)

    if into:
        _write_side_tables(plan, into, routed.silver, quarantined, first, metadata)
    else:
        if pending is None:
            adjustment = (silver_old.num_rows - routed.silver.num_rows) \
                + (open_old.num_rows - quarantined.num_rows) + dup_resolved
            ledger.append(pa.Table.from_pylist([{
                "table": table.qualified_name, "kind": REBUILD, "app_id": app, "batch_id": n,
                "bronze_from_version": first, "bronze_to_version": last, "bronze_rows": 0,
                "silver_rows": routed.silver.num_rows - silver_old.num_rows,
                "quarantined_rows": quarantined.num_rows - open_old.num_rows,
                "duplicates_in_batch": 0, "duplicates_in_silver": adjustment,
                "silver_version": None, "finished_at": now,
                "seconds": time.monotonic() - started, "validation_seconds": 0.0}],
                LEDGER_SCHEMA), n, metadata)
        where = f"_bronze_version >= {first} AND _bronze_version <= {last}"
        replace_rows(plan.uri, routed.silver, app, n, metadata, where, ("event_date",), opts)
        faults.crash_point(app, "after_delta_commit", n)
        replace_rows(plan.quarantine_uri, quarantined, app, n, metadata, where, (), opts)
    return _with_seconds(report, time.monotonic() - started)


def _with_seconds(report: SilverReplay, seconds: float) -> SilverReplay:
    from dataclasses import replace
    return replace(report, seconds=seconds)


def _pending(plan: SilverPlan, app: str) -> tuple[int, int, int] | None:
    """(n, first, last) of a replay whose ledger line is written but whose silver or
    quarantine commit is not."""
    ledger = open_table(plan.ledger_uri, plan.storage_options)
    if ledger is None or ledger.transaction_version(app) is None:
        return None
    n = int(ledger.transaction_version(app))  # type: ignore[arg-type]
    done = [open_table(uri, plan.storage_options) for uri in (plan.uri, plan.quarantine_uri)]
    if all(t is not None and (t.transaction_version(app) or -1) >= n for t in done):
        return None
    line = ledger.to_pyarrow_dataset().to_table(
        filter=(pc.field("app_id") == app) & (pc.field("batch_id") == n)).to_pylist()[0]
    return n, int(line["bronze_from_version"]), int(line["bronze_to_version"])


def _write_side_tables(plan: SilverPlan, into: str, silver: pa.Table, quarantined: pa.Table,
                       first: int, metadata: dict[str, object]) -> None:
    """``silver.<into>`` and its quarantine: the rows before ``first`` as they are, plus
    the rebuilt ones."""
    opts, wh_root = plan.storage_options, plan.uri.rsplit("/", 1)[0]
    earlier = pc.field("_bronze_version") < first
    for source, rebuilt, name, parts in ((plan.uri, silver, into, ("event_date",)),
                                         (plan.quarantine_uri, quarantined,
                                          f"{into}_quarantine", ())):
        current = open_table(source, opts)
        kept = current.to_pyarrow_dataset().to_table(filter=earlier) if current else None
        rows = rebuilt if kept is None or kept.num_rows == 0 else \
            pa.concat_tables([kept.cast(rebuilt.schema), rebuilt])
        target = f"{wh_root}/{name}"
        if open_table(target, opts) is not None:
            raise LakehouseError(ErrorCode.REPLAY_NOTHING, f"silver.{name} exists already",
                                 hint="pick another --into name, or drop that table first")
        replace_rows(target, rows, str(metadata["lakehouse.query"]), 0, metadata, None,
                     parts, opts)


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


def replay_gold(spark: SparkSession, config: Config, table: GoldTable,
                into: str | None = None, printer: Printer = print) -> GoldReplay:
    """Recompute ``table`` (and its state) whole from silver as it is now."""
    from lakehouse.aggregates import partial, recompute, with_rollup_keys
    from lakehouse.gold import ensure_gold_tables, load_gold_plan, schemas, stamped
    started = time.monotonic()
    plan = load_gold_plan(config, table)
    opts, agg = plan.storage_options, plan.agg
    silver_table = open_table(plan.silver_uri, opts)
    if silver_table is None:
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND,
                             f"{table.qualified_name} reads silver.{table.silver}, which does "
                             "not exist yet", hint="run the pipelines first")
    version = silver_table.version()
    silver = (spark.read.format("delta-py").option("path", plan.silver_uri)
              .option("versionAsOf", str(version)).load())
    sch = schemas(spark, agg, silver.schema)
    ensure_gold_tables(plan, sch)
    now = datetime.now(UTC)
    printer(f"[{table.qualified_name}] recomputing from silver.{table.silver} version "
            f"{version} ...")
    output = stamped(recompute(agg, silver).toArrow(), now)
    app = f"{table.qualified_name}:replay"
    target_uri = plan.uri if not into else f"{plan.uri.rsplit('/', 1)[0]}/{into}"
    if into and open_table(target_uri, opts) is not None:
        raise LakehouseError(ErrorCode.REPLAY_NOTHING, f"gold.{into} exists already",
                             hint="pick another --into name")
    before = open_table(target_uri, opts)
    done = None if before is None else before.transaction_version(app)
    n = 0 if done is None else done + 1
    metadata = {"lakehouse.query": app, RUN_ID: str(generate_new_uuid()),
                SILVER_VERSIONS: json.dumps({"from": 0, "to": version}),
                MERGE_KEYS: json.dumps(agg.output_keys), "lakehouse.replay": n}
    rows_before = 0 if before is None else int(before.count())
    replace_rows(target_uri, output, app, n, metadata, storage_options=opts)
    if plan.state_uri is not None and not into:
        state = stamped(with_rollup_keys(agg, partial(agg, silver)).toArrow(), now)
        replace_rows(plan.state_uri, state, app, n,
                     {**metadata, MERGE_KEYS: json.dumps(agg.keys)}, storage_options=opts)
    if not into:
        checkpoint = Path(config.warehouse.checkpoint_uri(table.qualified_name))
        if "://" not in str(checkpoint) and checkpoint.is_dir():
            shutil.rmtree(checkpoint)
            printer(f"[{table.qualified_name}] removed its checkpoint: the next run continues "
                    f"after silver version {version}")
    return GoldReplay(table.qualified_name, f"gold.{into}" if into else table.qualified_name,
                      version, rows_before, output.num_rows, time.monotonic() - started)


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
    from confluent_kafka import TopicPartition

    from lakehouse.io.kafka_admin import metadata_consumer, topic_partitions, watermarks
    consumer = metadata_consumer(config.kafka.bootstrap_servers, config.kafka.client_properties)
    try:
        partitions = topic_partitions(consumer, config.kafka.bootstrap_servers, topic)
        marks = watermarks(consumer, topic, partitions)
        if isinstance(start, datetime):
            ms = int(start.timestamp() * 1000)
            found = consumer.offsets_for_times([TopicPartition(topic, p, ms) for p in partitions],
                                               timeout=30)
            offsets = {tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][1]
                       for tp in found}
        else:
            offsets = {p: start.get(p, marks[p][1]) for p in partitions}
    finally:
        consumer.close()
    gone = {p: marks[p][0] for p, o in offsets.items() if o < marks[p][0]}
    if gone:
        raise LakehouseError(
            ErrorCode.REPLAY_NOT_RETAINED,
            f"Kafka no longer retains the offsets asked for in {topic}: "
            + ", ".join(f"partition {p} starts at {low} now" for p, low in sorted(gone.items())),
            hint="replay from offsets Kafka still holds (or from silver/gold, which keep "
                 "what bronze landed)", topic=topic)
    return offsets


def replay_bronze(config: Config, table: BronzeTable, start: dict[int, int] | datetime,
                  printer: Printer = print) -> BronzeReplay:
    """Reset a bronze table's query to earlier Kafka offsets and run it until idle,
    landing only the records the table does not hold; its old checkpoint is kept aside."""
    from lakehouse.runner import run
    started = time.monotonic()
    topic = config.source(table.source).topic
    offsets = kafka_start(config, topic, start)
    opts = dict(config.warehouse.storage_options)
    uri = config.warehouse.table_uri("bronze", table.name)
    current = open_table(uri, opts)
    before = 0 if current is None else int(current.count())
    checkpoint = Path(config.warehouse.checkpoint_uri(table.qualified_name))
    if "://" in str(checkpoint):
        raise LakehouseError(ErrorCode.REPLAY_NOTHING, "bronze resets need a local checkpoint",
                             hint=f"move {checkpoint} aside by hand, then run with "
                                  "streaming.starting_offsets set")
    if checkpoint.is_dir():
        aside = checkpoint.with_name(f"{checkpoint.name}.before-reset-{int(time.time())}")
        checkpoint.rename(aside)
        printer(f"[{table.qualified_name}] old checkpoint kept at {aside}")
    reset = json.dumps({topic: {str(p): o for p, o in offsets.items()}})
    run(config, until_idle=True, tables=[table.qualified_name], printer=printer,
        bronze_reset={table.qualified_name: reset})
    after = open_table(uri, opts)
    return BronzeReplay(table.qualified_name, offsets, before,
                        0 if after is None else int(after.count()), time.monotonic() - started)
