"""Gold: silver -> exact aggregates, merged by key every micro-batch, late data included.

One streaming query per gold table reads its silver table through ``delta-py``
(offsets are silver versions). Each micro-batch:

1. ``partial``: the batch's rows aggregated per key (Spark; measures merge exactly).
2. The stored rows with those keys are read (pruned on the first key) and merged with
   the partials: ``combine`` (Spark). An event hours late lands in its old window this
   way; nothing is dropped and there is no watermark.
3. One-stage tables: ``finish`` adds derived columns and the rows are upserted (Delta
   MERGE by key). Two-stage tables: the merged rows are the state; every output group
   they touch (before or after the merge) is recomputed from its complete state rows
   by the ``Rollup`` and upserted, groups left empty are deleted, then the state is
   upserted.

Every MERGE carries the Delta transaction ``(query app id, batch id)``, so a batch
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import reduce
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import DataType, StructType

from lakehouse import faults
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
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta import AppIdBinding, IdempotentMerger, ensure_table, open_table
from lakehouse.io.delta_source import FORMAT_NAME as DELTA_FORMAT
from lakehouse.io.delta_source import VERSION_COLUMN
from lakehouse.lineage.datasets import (
    SILVER_VERSIONS,
    BatchIO,
    BatchRun,
    QuerySpec,
    Read,
    Written,
    storage_dataset,
)
from lakehouse.lineage.tracking import Lineage
from lakehouse.registry import GoldTable
from lakehouse.spark import start_batches

Printer = Callable[[str], None]


@dataclass(frozen=True)
class GoldPlan:
    """One gold table: its definition, its tables, and the silver table it reads."""

    table: GoldTable
    agg: Aggregate
    uri: str
    state_uri: str | None
    """The internal state table of a two-stage aggregate."""
    silver_uri: str
    storage_options: dict[str, str] = field(default_factory=dict)

    @property
    def progress_uri(self) -> str:
        """The table each batch writes last: its commits say how far gold has read."""
        return self.state_uri or self.uri


def load_gold_plan(config: Config, table: GoldTable) -> GoldPlan:
    """Build the definition (needs a SparkSession) and locate the tables."""
    wh = config.warehouse
    agg = table.build()
    return GoldPlan(table, agg, wh.table_uri("gold", table.name),
                    wh.table_uri("gold", table.state_name) if agg.rollup else None,
                    wh.table_uri("silver", table.silver), dict(wh.storage_options))


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


def stamped(data: pa.Table, now: datetime) -> pa.Table:
    """Rows with ``updated_at`` set to ``now``."""
    return data.append_column(UPDATED_AT, pa.array([now] * data.num_rows,
                                                   pa.timestamp("us", tz="UTC")))


# -- I/O --------------------------------------------------------------------------------

def stored_rows(uri: str, storage_options: dict[str, str], column: str,
                values: pa.ChunkedArray | pa.Array, schema: pa.Schema) -> pa.Table:
    """Rows of a table whose ``column`` is among ``values`` (nulls included): the stored
    candidates for a batch's keys, read with file pruning on that one column."""
    table = open_table(uri, storage_options)
    if table is None or len(values) == 0:
        return schema.empty_table()
    distinct = pc.unique(values).cast(schema.field(column).type)  # e.g. string_view -> string
    filt = pc.field(column).isin(distinct.drop_null())
    if distinct.null_count:
        filt = filt | pc.field(column).is_null()
    # Filtered after reading: files written by delta-rs' MERGE store strings as
    # string_view, and pyarrow cannot yet push string filters into those statistics.
    return table.to_pyarrow_table(columns=schema.names).filter(filt).cast(schema)


def frame(spark: SparkSession, data: pa.Table, schema: StructType) -> DataFrame:
    """A small Arrow table as a DataFrame with a fixed schema."""
    return spark.createDataFrame(data.select(schema.fieldNames()), schema=schema)


@dataclass(frozen=True)
class Schemas:
    """The Spark and Arrow schemas of a gold table's partials, state and output."""

    partial: StructType
    types: dict[str, DataType]
    state: StructType
    """Partials (plus rollup keys for a two-stage table)."""
    output: StructType
    """Without updated_at."""

    def arrow(self, which: StructType, with_updated_at: bool = True) -> pa.Schema:
        """An Arrow schema (with updated_at unless told otherwise)."""
        schema = to_arrow_schema(which)
        return schema.append(pa.field(UPDATED_AT, pa.timestamp("us", tz="UTC"))) \
            if with_updated_at else schema


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


@dataclass
class GoldWriter:
    """The foreachBatch function of one gold query."""

    spark: SparkSession
    plan: GoldPlan
    schemas: Schemas
    output: IdempotentMerger
    state: IdempotentMerger | None
    printer: Printer
    query_name: str

    def __post_init__(self) -> None:
        self.binding = AppIdBinding(*[w for w in (self.output, self.state) if w is not None])

    def __call__(self, df: DataFrame, batch_id: int, run: BatchRun) -> BatchIO:
        started = time.monotonic()
        # One read of the batch through the source; the rest runs on this local copy,
        # which is far cheaper for Spark than planning the Python source again per job.
        batch = df.toArrow()
        silver = storage_dataset(self.plan.silver_uri)
        if batch.num_rows == 0:
            return BatchIO([Read(silver, 0)])
        versions = batch.column(VERSION_COLUMN)
        span = (pc.min(versions).as_py(), pc.max(versions).as_py())
        metadata = {"lakehouse.query": self.query_name,
                    SILVER_VERSIONS: json.dumps({"from": span[0], "to": span[1]}),
                    "lakehouse.silver_rows": batch.num_rows, **run.commit_metadata()}
        read = time.monotonic() - started
        rows = self.spark.createDataFrame(batch, schema=df.schema)
        part = partial(self.plan.agg, rows).toArrow()
        aggregated = time.monotonic() - started - read
        report = self.process(part, batch_id, metadata, batch.num_rows, started)
        version = f"version {report.version}" if report.version is not None \
            else "already merged (replay)"
        self.printer(f"[{self.query_name}] batch {batch_id}: {report.silver_rows:,} silver rows "
                     f"-> {report.groups:,} groups, {report.upserted:,} rows upserted"
                     + (f", {report.deleted:,} deleted" if report.deleted else "")
                     + f" -> {version} in {report.seconds:.2f}s (read {read:.2f}s, aggregate "
                       f"{aggregated:.2f}s, merge+write {report.seconds - read - aggregated:.2f}s)")
        return BatchIO([Read(silver, batch.num_rows, span)], report.writes)

    def process(self, part_rows: pa.Table, batch_id: int, metadata: dict[str, Any],
                silver_rows: int, started: float) -> GoldReport:
        """Merge one batch's partial aggregates into the table (and its state)."""
        plan, sch, agg = self.plan, self.schemas, self.plan.agg
        now = datetime.now(UTC)
        part = frame(self.spark, part_rows, sch.partial)
        first = agg.keys[0]
        stored_uri = plan.state_uri or plan.uri
        stored_schema = sch.arrow(sch.state, with_updated_at=False)
        stored = stored_rows(stored_uri, plan.storage_options, first,
                             part_rows.column(first), stored_schema)
        stored_df = frame(self.spark, stored, sch.state)
        merged = merge_states(agg, sch.types, part, stored_df)
        if agg.rollup is None:
            out = stamped(finish(agg, merged).toArrow(), now)
            faults.crash_point(self.query_name, "before_delta_commit", batch_id)
            written = self.output.merge(out, batch_id, metadata)
            faults.crash_point(self.query_name, "after_delta_commit", batch_id)
            return GoldReport(silver_rows, part_rows.num_rows, out.num_rows, 0,
                              written.version, time.monotonic() - started,
                              [Written(plan.uri, written.version, out.num_rows)])

        assert self.state is not None and plan.state_uri is not None
        state_rows = with_rollup_keys(agg, merged).toArrow()
        state_df = frame(self.spark, state_rows, sch.state)
        rk = rollup_key_columns(agg)[0]
        touched_values = pa.chunked_array([*stored.column(rk).chunks,
                                           *state_rows.column(rk).chunks],
                                          stored_schema.field(rk).type)
        group_rows = stored_rows(plan.state_uri, plan.storage_options, rk, touched_values,
                                 stored_schema)
        groups = regroup(agg, state_df, stored_df,
                         frame(self.spark, group_rows, sch.state)).toArrow()
        empty = groups.column(EMPTY)
        out = stamped(groups.filter(pc.invert(empty)).drop_columns([EMPTY]), now)
        deletes = groups.filter(empty).select(agg.output_keys)
        written = self.output.merge(out, batch_id, metadata, deletes=deletes)
        faults.crash_point(self.query_name, "after_output_commit", batch_id)
        kept = self.state.merge(stamped(state_rows, now), batch_id, metadata)
        faults.crash_point(self.query_name, "after_delta_commit", batch_id)
        return GoldReport(silver_rows, part_rows.num_rows, out.num_rows, deletes.num_rows,
                          written.version, time.monotonic() - started,
                          [Written(plan.uri, written.version, out.num_rows + deletes.num_rows),
                           Written(plan.state_uri, kept.version, state_rows.num_rows)])


def read_progress(uri: str, storage_options: dict[str, str]) -> int | None:
    """The last silver version a gold table's commits say they cover."""
    table = open_table(uri, storage_options)
    if table is None:
        return None
    covered = [json.loads(c[SILVER_VERSIONS])["to"] for c in table.history()
               if SILVER_VERSIONS in c]
    return max(covered, default=None)


def ensure_gold_tables(plan: GoldPlan, sch: Schemas) -> tuple[IdempotentMerger,
                                                              IdempotentMerger | None]:
    """Create the output (and state) tables if missing; their mergers."""
    opts = plan.storage_options
    agg = plan.agg
    ensure_table(plan.uri, sch.arrow(sch.output), (), opts, description=plan.table.description)
    output = IdempotentMerger(plan.uri, plan.table.qualified_name, agg.output_keys, opts)
    if plan.state_uri is None:
        return output, None
    ensure_table(plan.state_uri, sch.arrow(sch.state), (), opts,
                 description=f"state rows of {plan.table.qualified_name} (one per "
                             f"{', '.join(agg.keys)})")
    return output, IdempotentMerger(plan.state_uri, plan.table.qualified_name, agg.keys, opts)


def start_gold(spark: SparkSession, config: Config, table: GoldTable,
               printer: Printer, lineage: Lineage | None = None) -> StreamingQuery:
    """Start the streaming query that keeps one gold table up to date from silver."""
    plan = load_gold_plan(config, table)
    query_name = table.qualified_name
    if open_table(plan.silver_uri, plan.storage_options) is None:
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND,
                             f"{query_name} reads silver.{table.silver}, which does not exist",
                             hint=f"run silver.{table.silver} first (lakehouse run runs all "
                                  "layers in order)")
    reader = (spark.readStream.format(DELTA_FORMAT).option("path", plan.silver_uri)
              .option("maxRowsPerTrigger", str(config.gold.max_rows_per_trigger)))
    if config.warehouse.is_fresh_checkpoint(query_name):
        done = read_progress(plan.progress_uri, plan.storage_options)
        if done is not None:
            printer(f"[{query_name}] no checkpoint but the table covers silver up to "
                    f"version {done}: continuing from version {done + 1}")
            reader = reader.option("startingVersion", str(done + 1))
    silver = reader.load()
    sch = schemas(spark, plan.agg, silver.schema)
    output, state = ensure_gold_tables(plan, sch)
    writer = GoldWriter(spark, plan, sch, output, state, printer, query_name)
    outputs = [plan.uri] + ([plan.state_uri] if plan.state_uri else [])
    spec = QuerySpec(query_name, storage_dataset(plan.silver_uri), plan.silver_uri, outputs,
                     {plan.uri: lambda: recompute(plan.agg, silver)})
    tracker = (lineage or Lineage.off(config)).query(spec, spark.version)
    return start_batches(silver, config, query_name, writer, writer.binding, tracker)


# -- verification: streamed gold == batch recomputation ----------------------------------

@dataclass(frozen=True)
class GoldCheck:
    """A gold table compared with its recomputation from silver."""

    table: str
    silver_version: int | None
    rows: int
    only_in_gold: list[dict[str, Any]]
    only_in_recompute: list[dict[str, Any]]
    different: list[tuple[dict[str, Any], dict[str, Any]]]

    @property
    def equal(self) -> bool:
        """No difference at all."""
        return not (self.only_in_gold or self.only_in_recompute or self.different)

    def describe(self) -> str:
        """One line, plus a few differences if any."""
        at = f"silver version {self.silver_version}" if self.silver_version is not None \
            else "no silver data yet"
        if self.equal:
            return f"{self.table}: {self.rows:,} rows equal the recomputation from silver ({at})"
        lines = [f"{self.table}: DIFFERS from the recomputation from silver ({at}): "
                 f"{len(self.only_in_gold)} rows only in gold, {len(self.only_in_recompute)} "
                 f"only in the recomputation, {len(self.different)} with other values"]
        lines += [f"  only in gold: {_row(r)}" for r in self.only_in_gold[:5]]
        lines += [f"  only in recomputation: {_row(r)}" for r in self.only_in_recompute[:5]]
        lines += [f"  gold {_row(a)} != recomputed {_row(b)}" for a, b in self.different[:5]]
        return "\n".join(lines)


def _row(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items())


def compare(gold: pa.Table, expected: pa.Table, keys: Sequence[str], table: str,
            silver_version: int | None) -> GoldCheck:
    """Every difference between two versions of a table, matched by key (pure)."""
    columns = expected.column_names

    def by_key(data: pa.Table) -> dict[tuple[Any, ...], dict[str, Any]]:
        return {tuple(_norm(r[k]) for k in keys): {c: r[c] for c in columns}
                for r in data.select(columns).to_pylist()}

    mine, theirs = by_key(gold), by_key(expected)
    return GoldCheck(
        table, silver_version, gold.num_rows,
        [mine[k] for k in sorted(set(mine) - set(theirs), key=repr)],
        [theirs[k] for k in sorted(set(theirs) - set(mine), key=repr)],
        [(mine[k], theirs[k]) for k in sorted(set(mine) & set(theirs), key=repr)
         if mine[k] != theirs[k]])


def _norm(value: Any) -> Any:
    return value.normalize() if isinstance(value, Decimal) else value


def verify(spark: SparkSession, config: Config, table: GoldTable) -> GoldCheck:
    """Compare the streamed table with one batch query over silver, as of the silver
    version the table has read."""
    plan = load_gold_plan(config, table)
    gold = open_table(plan.uri, plan.storage_options)
    if gold is None:
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND,
                             f"{table.qualified_name} does not exist yet",
                             hint="run the pipelines first (lakehouse run --until-idle)")
    version = read_progress(plan.uri, plan.storage_options)
    current = gold.to_pyarrow_table()
    if version is None:
        expected = current.schema.empty_table().drop_columns([UPDATED_AT])
    else:
        silver = (spark.read.format(DELTA_FORMAT).option("path", plan.silver_uri)
                  .option("versionAsOf", str(version)).load())
        expected = recompute(plan.agg, silver).toArrow()
    return compare(current, expected, plan.agg.output_keys, table.qualified_name, version)
