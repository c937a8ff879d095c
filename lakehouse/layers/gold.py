"""Gold: silver -> exact aggregates, merged by key every micro-batch, late data included.

One streaming query per gold table reads its silver table's change feed (each row with
its silver version). Each micro-batch, all of it Spark jobs on the executors:

1. ``partial``: the batch's rows aggregated per key (Spark; measures merge exactly).
2. The stored rows with those keys are read (pruned on the first key) and merged with
   the partials: ``combine`` (Spark). An event hours late lands in its old window this
   way; nothing is dropped and there is no watermark.
3. One-stage tables: ``finish`` adds derived columns and the rows are upserted (Delta
   MERGE by key). Two-stage tables: the merged rows are the state; every output group
   they touch (before or after the merge) is recomputed from its complete state rows
   by the ``Rollup`` and upserted, groups left empty are deleted, then the state is
   upserted.

Every MERGE (``DeltaTable.merge``) carries the Delta transaction ``(query app id, batch
id)``, so a batch
replayed after a crash is skipped where it was committed. The output is written before
the state it is derived from: a crash between the two leaves the state as it was, and
the replay recomputes the same output. Commits record the silver versions they cover
(``lakehouse.silver_versions``), so a new checkpoint resumes after them.

``verify`` recomputes a table from silver (as of the version gold has read) with one
batch query and reports every difference.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import DataType, StructField, StructType, TimestampType

from lakehouse import faults, graph
from lakehouse.aggregates import (
    UPDATED_AT,
    Aggregate,
    combine,
    finish,
    partial,
    recompute,
    roll,
    rollup_key_columns,
    with_rollup_keys,
)
from lakehouse.batch import SILVER_VERSIONS, BatchIO, BatchRun, QuerySpec, Read, Written, storage_dataset
from lakehouse.io.checkpoints import has_checkpoint
from lakehouse.io.delta import VERSION_COLUMN, ensure_table, merge, read_table
from lakehouse.io.delta_log import BatchCommit, WriteResult, history, open_table
from lakehouse.layers.stream import require_input, start_from_table
from lakehouse.lineage.tracking import Lineage
from lakehouse.observe.events import EventLog
from lakehouse.observe.latency import event_time_aggregates, event_times
from lakehouse.printing import Printer
from lakehouse.registry import GoldTable
from lakehouse.steps import step


@dataclass(frozen=True)
class GoldPlan:
    """One gold table: its definition, its tables, and the silver table it reads."""

    table: GoldTable
    agg: Aggregate
    uri: str
    state_uri: str | None
    """The internal state table of a two-stage aggregate."""
    silver_uri: str
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)
    checkpoint: str = ""
    """The checkpoint of the table's streaming query."""
    table_properties: dict[str, str] = field(default_factory=dict)
    """Delta properties its tables are created with (the audit horizon's retention)."""

    @property
    def progress_uri(self) -> str:
        """The table each batch writes last: its commits say how far gold has read."""
        return self.state_uri or self.uri


def load_gold_plan(pipeline: graph.Graph, table: GoldTable) -> GoldPlan:
    """Build the definition (needs a SparkSession); its tables and checkpoint are the
    graph's (a two-stage table's state, known once the definition is built, lives beside
    it)."""
    config = pipeline.config
    wh = config.warehouse
    agg = table.build()
    query = pipeline.query(table.qualified_name)
    return GoldPlan(table, agg, pipeline.node(query.name).uri,
                    wh.table_uri("gold", table.state_name) if agg.rollup else None,
                    pipeline.node(query.input).uri, dict(wh.storage_options),
                    query.checkpoint, config.retention.delta_properties)


# -- pure: the incremental step (Spark, on small frames) -------------------------------

def matching(left: DataFrame, right: DataFrame, keys: Sequence[str], how: str) -> DataFrame:
    """``left`` rows whose keys are (``semi``) or are not (``anti``) in ``right``; nulls
    match nulls."""
    renamed = right.select(*[F.col(k).alias(f"_j_{k}") for k in keys]).distinct()
    on: Column = reduce(lambda a, b: a & b,
                        [left[k].eqNullSafe(renamed[f"_j_{k}"]) for k in keys])
    return left.join(renamed, on, f"left_{how}")


def merge_states(agg: Aggregate, types: dict[str, DataType], part: DataFrame,
                 stored: DataFrame) -> DataFrame:
    """The batch's partials merged with the stored rows of the same keys."""
    columns = [*agg.keys, *agg.measures]
    held = matching(stored.select(*columns), part, agg.keys, "semi")
    return combine(agg, held.unionByName(part.select(*columns)), types)


EMPTY = "_group_empty"


def regroup(agg: Aggregate, merged: DataFrame, stored: DataFrame, group_rows: DataFrame
            ) -> DataFrame:
    """Two-stage step: one row per output group the batch touched (before or after the
    merge): its recomputed output row, or only its keys and ``_group_empty`` when no
    state row is left in it. ``merged``: new state rows (with rollup keys); ``stored``:
    state rows before the merge for the same keys; ``group_rows``: stored state rows of
    (a superset of) the touched groups."""
    assert agg.rollup is not None
    rks, keys = rollup_key_columns(agg), agg.rollup.keys
    touched = (matching(stored, merged, agg.keys, "semi").select(*rks)
               .unionByName(merged.select(*rks)).distinct())
    rows = matching(group_rows, merged, agg.keys, "anti").unionByName(merged)
    output = roll(agg.rollup, matching(rows, touched, rks, "semi"))
    groups = touched.select(*[F.col(r).alias(f"_g_{k}") for r, k in zip(rks, keys, strict=True)])
    found = output.withColumn("_found", F.lit(True))
    on: Column = reduce(lambda a, b: a & b,
                        [groups[f"_g_{k}"].eqNullSafe(found[k]) for k in keys])
    return groups.join(found, on, "left").select(
        *[F.col(f"_g_{k}").alias(k) for k in keys],
        *[c for c in output.columns if c not in keys], F.col("_found").isNull().alias(EMPTY))


def stamped(data: DataFrame) -> DataFrame:
    """Rows with ``updated_at`` set to the batch's time."""
    return data.withColumn(UPDATED_AT, F.current_timestamp())


def key_match(keys: Sequence[str]) -> str:
    """A MERGE condition matching target ``t`` and source ``s`` rows on ``keys`` (nulls
    match nulls)."""
    return " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)


@dataclass(frozen=True)
class Schemas:
    """The Spark schemas of a gold table's partials, state and output."""

    partial: StructType
    types: dict[str, DataType]
    state: StructType
    """Partials (plus rollup keys for a two-stage table)."""
    output: StructType
    """Without updated_at."""


def with_updated_at(schema: StructType) -> StructType:
    """A stored table's schema: the rows plus ``updated_at``."""
    return StructType([*schema.fields, StructField(UPDATED_AT, TimestampType(), True)])


def schemas(spark: SparkSession, agg: Aggregate, silver: StructType) -> Schemas:
    """Derive every schema from the definition applied to an empty silver frame."""
    empty = spark.createDataFrame([], silver)
    part = partial(agg, empty)
    types = {n: part.schema[n].dataType for n in agg.measures}
    if agg.rollup is None:
        return Schemas(part.schema, types, part.schema, finish(agg, part).schema)
    state = with_rollup_keys(agg, part)
    return Schemas(part.schema, types, state.schema, roll(agg.rollup, state).schema)


@dataclass(frozen=True)
class GoldReport:
    """What one gold batch did."""

    silver_rows: int
    groups: int
    upserted: int
    deleted: int
    version: int | None
    seconds: float
    writes: list[Written] = field(default_factory=list)


def upsert(rows: DataFrame, uri: str, keys: Sequence[str], commit: BatchCommit,
           deletes: DataFrame | None = None) -> WriteResult:
    """Insert or replace ``rows`` by ``keys`` and delete the rows whose keys are in
    ``deletes``, in one MERGE."""
    source = rows.withColumn(DELETE, F.lit(False))
    if deletes is not None:
        gone = deletes.select(*[F.col(f.name) if f.name in keys
                                else F.lit(None).cast(f.dataType).alias(f.name)
                                for f in rows.schema.fields], F.lit(True).alias(DELETE))
        source = source.unionByName(gone)
    values = {f"`{c}`": f"s.`{c}`" for c in rows.columns}
    return merge(source, uri, key_match(keys),
                 lambda m: (m.whenMatchedDelete(f"s.{DELETE}")
                            .whenMatchedUpdate(f"NOT s.{DELETE}", values)
                            .whenNotMatchedInsert(f"NOT s.{DELETE}", values)),
                 commit, keys)


DELETE = "_lakehouse_delete"
EVENT_TIME = "_kafka_timestamp"
"""Silver's Kafka timestamp of each record: gold's event -> gold latency."""


@dataclass
class GoldWriter:
    """The foreachBatch function of one gold query."""

    plan: GoldPlan
    schemas: Schemas
    printer: Printer
    query_name: str

    def __call__(self, df: DataFrame, run: BatchRun) -> BatchIO:
        started = time.monotonic()
        silver = storage_dataset(self.plan.silver_uri)
        rows = df.persist()
        try:
            times = event_time_aggregates(EVENT_TIME) if EVENT_TIME in rows.columns else []
            with step("read silver rows"):
                totals = rows.agg(F.count(F.lit(1)).alias("n"),
                                  F.min(VERSION_COLUMN).alias("first"),
                                  F.max(VERSION_COLUMN).alias("last"), *times).first()
            assert totals is not None
            if not totals["n"]:
                return BatchIO([Read(silver, 0)])
            span = (int(totals["first"]), int(totals["last"]))
            commit = run.commit(**{"lakehouse.query": self.query_name,
                                   SILVER_VERSIONS: json.dumps({"from": span[0], "to": span[1]}),
                                   "lakehouse.silver_rows": int(totals["n"])})
            report = self.process(partial(self.plan.agg, rows), commit, int(totals["n"]),
                                  started)
        finally:
            rows.unpersist()
        version = f"version {report.version}" if report.version is not None \
            else "already merged (replay)"
        self.printer(f"[{self.query_name}] batch {run.batch_id}: {report.silver_rows:,} silver "
                     f"rows -> {report.groups:,} groups, {report.upserted:,} rows upserted"
                     + (f", {report.deleted:,} deleted" if report.deleted else "")
                     + f" -> {version} in {report.seconds:.2f}s")
        return BatchIO([Read(silver, report.silver_rows, span)], report.writes,
                       event_times=event_times(totals) if times else None)

    def process(self, part: DataFrame, commit: BatchCommit, silver_rows: int,
                started: float) -> GoldReport:
        """Merge one batch's partial aggregates into the table (and its state)."""
        plan, sch, agg = self.plan, self.schemas, self.plan.agg
        spark = part.sparkSession
        batch_id = commit.batch_id
        stored = (read_table(spark, plan.state_uri or plan.uri)
                  .select(*sch.state.fieldNames()))
        merged = merge_states(agg, sch.types, part.persist(), stored)
        if agg.rollup is None:
            try:
                faults.crash_point(self.query_name, "before_delta_commit", batch_id)
                written = upsert(stamped(finish(agg, merged)), plan.uri, agg.output_keys,
                                 commit)
                faults.crash_point(self.query_name, "after_delta_commit", batch_id)
            finally:
                part.unpersist()
            upserted = _upserted(written)
            return GoldReport(silver_rows, upserted, upserted, 0, written.version,
                              time.monotonic() - started,
                              [Written(plan.uri, written.version, written.rows)])

        assert plan.state_uri is not None and agg.rollup is not None
        state_rows = with_rollup_keys(agg, merged).persist()
        rks = rollup_key_columns(agg)
        held = matching(stored, state_rows, agg.keys, "semi").select(*rks)
        touched = held.unionByName(state_rows.select(*rks)).distinct()
        group_rows = matching(stored, touched, rks, "semi")
        groups = regroup(agg, state_rows, stored, group_rows).persist()
        try:
            out = stamped(groups.filter(~F.col(EMPTY)).drop(EMPTY))
            deletes = groups.filter(F.col(EMPTY)).select(*agg.output_keys)
            written = upsert(out, plan.uri, agg.output_keys, commit, deletes)
            faults.crash_point(self.query_name, "after_output_commit", batch_id)
            kept = upsert(stamped(state_rows), plan.state_uri, agg.keys, commit)
            faults.crash_point(self.query_name, "after_delta_commit", batch_id)
        finally:
            groups.unpersist()
            state_rows.unpersist()
            part.unpersist()
        return GoldReport(silver_rows, _upserted(kept), _upserted(written),
                          int(written.metrics.get("numTargetRowsDeleted", 0)),
                          written.version, time.monotonic() - started,
                          [Written(plan.uri, written.version, written.rows),
                           Written(plan.state_uri, kept.version, kept.rows)])


def _upserted(written: WriteResult) -> int:
    """Rows a MERGE inserted or updated (its metrics: no job of its own to count them)."""
    return sum(int(written.metrics.get(k, 0))
               for k in ("numTargetRowsInserted", "numTargetRowsUpdated"))


def read_progress(uri: str, storage_options: dict[str, str]) -> int | None:
    """The last silver version a gold table's commits say they cover."""
    table = open_table(uri, storage_options)
    if table is None:
        return None
    covered = [json.loads(c[SILVER_VERSIONS])["to"] for c in history(table)
               if SILVER_VERSIONS in c]
    return max(covered, default=None)


def ensure_gold_tables(plan: GoldPlan, sch: Schemas) -> None:
    """Create the output (and state) tables if missing."""
    ensure_table(plan.uri, with_updated_at(sch.output), (), plan.table.description,
                 storage_options=plan.storage_options, properties=plan.table_properties)
    if plan.state_uri is not None:
        ensure_table(plan.state_uri, with_updated_at(sch.state), (),
                     f"state rows of {plan.table.qualified_name} (one per "
                     f"{', '.join(plan.agg.keys)})", storage_options=plan.storage_options,
                     properties=plan.table_properties)


def start_gold(spark: SparkSession, pipeline: graph.Graph, table: GoldTable,
               printer: Printer, lineage: Lineage | None = None,
               events: EventLog | None = None) -> StreamingQuery:
    """Start the streaming query that keeps one gold table up to date from silver."""
    config = pipeline.config
    plan = load_gold_plan(pipeline, table)
    query_name = table.qualified_name
    require_input(query_name, f"silver.{table.silver}", plan.silver_uri, plan.storage_options)
    start = None
    if not has_checkpoint(plan.checkpoint):
        done = read_progress(plan.progress_uri, plan.storage_options)
        if done is not None:
            printer(f"[{query_name}] no checkpoint but the table covers silver up to "
                    f"version {done}: continuing from version {done + 1}")
            start = done + 1
    return start_from_table(spark, config, query_name, plan.checkpoint, plan.silver_uri,
                            config.gold.max_bytes_per_trigger, start,
                            lambda silver: gold_writer(spark, plan, printer, silver),
                            lineage, events)


def gold_writer(spark: SparkSession, plan: GoldPlan, printer: Printer, silver: DataFrame
                ) -> tuple[GoldWriter, QuerySpec]:
    """The batch writer of a gold table and its lineage, its tables created. ``silver``:
    the silver rows it will read, with their version (a stream, or a batch of them)."""
    sch = schemas(spark, plan.agg, silver.schema)
    ensure_gold_tables(plan, sch)
    name = plan.table.qualified_name
    outputs = [plan.uri] + ([plan.state_uri] if plan.state_uri else [])
    spec = QuerySpec(name, storage_dataset(plan.silver_uri), plan.silver_uri, outputs,
                     {plan.uri: lambda: recompute(plan.agg, silver)})
    return GoldWriter(plan, sch, printer, name), spec
