"""Builds and runs the streaming queries: Kafka -> bronze -> silver -> gold, one query per
table.

Each table gets its own query, checkpoint and Delta writer, so tables can be restarted
and replayed independently; silver reads its bronze table and gold its silver table as
streams (``delta-py``).
Writes go through ``foreachBatch`` into delta-rs with the batch id as the Delta
transaction version (see ``lakehouse.io.delta``).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from lakehouse import faults
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta import (
    AppIdBinding,
    IdempotentAppender,
    ensure_table,
    max_kafka_offsets,
    open_table,
)
from lakehouse.io.kafka_admin import TopicSpec, ensure_topics
from lakehouse.io.kafka_offsets import ranges_in
from lakehouse.io.kafka_source import FORMAT_NAME
from lakehouse.lineage.datasets import (
    KAFKA_OFFSETS,
    BatchIO,
    BatchRun,
    DatasetName,
    QuerySpec,
    Read,
    Written,
    kafka_dataset,
)
from lakehouse.lineage.tracking import Lineage
from lakehouse.registry import (
    BronzeTable,
    GoldTable,
    SilverTable,
    discover_bronze,
    discover_gold,
    discover_silver,
)
from lakehouse.spark import start_batches

log = logging.getLogger(__name__)

Printer = Callable[[str], None]


def kafka_options(config: Config, table: BronzeTable) -> dict[str, str]:
    """Options of the ``kafka-py`` source for one bronze table."""
    source = config.source(table.source)
    streaming = config.streaming
    opts = {
        "kafka.bootstrap.servers": config.kafka.bootstrap_servers,
        "subscribe": source.topic,
        "startingOffsets": streaming.starting_offsets,
        "maxOffsetsPerTrigger": str(source.max_offsets_per_trigger
                                    or streaming.max_offsets_per_trigger),
        "failOnDataLoss": str(streaming.fail_on_data_loss).lower(),
        "dataLossLog": config.warehouse.checkpoint_uri(f"{table.qualified_name}/data_loss.jsonl"),
    }
    if streaming.progress_group:
        opts["progressGroup"] = streaming.progress_group
    opts.update({f"kafka.{k}": v for k, v in config.kafka.client_properties.items()})
    return opts


def ensure_source_topics(config: Config, sources: Sequence[str]) -> list[str]:
    """Create these sources' topics if missing, with their configured partition counts."""
    specs = [TopicSpec(s.topic, s.partitions, s.replication_factor)
             for s in map(config.source, sources)]
    return ensure_topics(config.kafka.bootstrap_servers, specs, config.kafka.client_properties)


@dataclass
class BronzeWriter:
    """The foreachBatch function of one bronze query: an idempotent Delta append."""

    table: BronzeTable
    appender: IdempotentAppender
    query_name: str
    printer: Printer

    source: DatasetName
    skip_held: bool = False
    """Drop records the table already holds (same partition and offset): a reset to
    earlier offsets lands only what is missing."""

    def __post_init__(self) -> None:
        self.binding = AppIdBinding(self.appender)

    def __call__(self, df: DataFrame, batch_id: int, run: BatchRun) -> BatchIO:
        started = time.monotonic()
        data = df.toArrow()
        read = data.num_rows
        if self.skip_held:
            data = not_held(data, held_coordinates(self.appender.uri, data,
                                                   self.appender.storage_options))
            if data.num_rows < read:
                self.printer(f"[{self.query_name}] batch {batch_id}: {read - data.num_rows:,} "
                             f"of {read:,} records are in the table already; skipped")
        ranges = ranges_in(data)
        metadata = {"lakehouse.query": self.query_name, KAFKA_OFFSETS: ranges,
                    **run.commit_metadata()}
        faults.crash_point(self.query_name, "before_delta_commit", batch_id)
        result = self.appender.append(data, batch_id, metadata)
        faults.crash_point(self.query_name, "after_delta_commit", batch_id)
        if result.written:
            took = time.monotonic() - started
            self.printer(f"[{self.query_name}] batch {batch_id}: {result.rows:,} rows -> "
                         f"version {result.version} in {took:.2f}s "
                         f"({_span(ranges)})")
        elif result.rows:
            self.printer(f"[{self.query_name}] batch {batch_id}: already in the table "
                         f"(replay after a restart), skipped {result.rows:,} rows")
        return BatchIO([Read(self.source, read, offsets=ranges)],
                       [Written(self.appender.uri, result.version, data.num_rows)])


def _coordinate_keys(partitions: pa.ChunkedArray | pa.Array, offsets: pa.ChunkedArray | pa.Array
                     ) -> pa.Array:
    """One int64 per (partition, offset): partition in the top 23 bits (pure)."""
    return pc.add(pc.shift_left(pc.cast(partitions, pa.int64()), 40),
                  pc.cast(offsets, pa.int64()))


def held_coordinates(uri: str, batch: pa.Table, storage_options: dict[str, str]) -> pa.Table:
    """The (partition, offset) pairs the table holds within the batch's offset span."""
    table = open_table(uri, storage_options)
    if table is None or batch.num_rows == 0:
        return pa.table({"partition": pa.array([], pa.int32()), "offset": pa.array([], pa.int64())})
    where = (pc.field("partition").isin(pc.unique(batch.column("partition")))
             & (pc.field("offset") >= pc.min(batch.column("offset")))
             & (pc.field("offset") <= pc.max(batch.column("offset"))))
    return table.to_pyarrow_dataset().to_table(columns=["partition", "offset"], filter=where)


def not_held(batch: pa.Table, held: pa.Table) -> pa.Table:
    """The batch's records whose (partition, offset) is not in ``held`` (pure)."""
    if held.num_rows == 0:
        return batch
    seen = _coordinate_keys(held.column("partition"), held.column("offset"))
    mine = _coordinate_keys(batch.column("partition"), batch.column("offset"))
    return batch.filter(pc.invert(pc.is_in(mine, value_set=seen)))


def _span(ranges: list[dict[str, Any]]) -> str:
    parts = [f"p{r['partition']}:{r['from']}-{r['to'] - 1}" for r in ranges]
    return " ".join(parts[:6]) + (" ..." if len(parts) > 6 else "")


def resume_offsets(config: Config, table: BronzeTable, printer: Printer) -> str | None:
    """Starting offsets for a new checkpoint over a table that already holds records.

    A deleted (or moved) checkpoint must not make the query read Kafka again from the
    configured start and land every record twice: continue after what the table holds.
    """
    if not config.warehouse.is_fresh_checkpoint(table.qualified_name):
        return None
    held = max_kafka_offsets(config.warehouse.table_uri("bronze", table.name),
                             config.warehouse.storage_options)
    if not held:
        return None
    printer(f"[{table.qualified_name}] no checkpoint but the table holds records: "
            f"continuing after them ({sum(len(p) for p in held.values())} partitions)")
    return json.dumps(held)


def start_bronze(spark: SparkSession, config: Config, table: BronzeTable,
                 printer: Printer = print, lineage: Lineage | None = None,
                 reset_to: str | None = None) -> StreamingQuery:
    """Start the streaming query that lands one source in its bronze table; with
    ``reset_to`` (JSON offsets, on a new checkpoint) from those offsets, landing only the
    records the table does not hold yet."""
    options = kafka_options(config, table)
    resume = reset_to or resume_offsets(config, table, printer)
    if resume:
        options["startingOffsets"] = resume
    raw = spark.readStream.format(FORMAT_NAME).options(**options).load()
    out = table.transform(raw)
    uri = config.warehouse.table_uri("bronze", table.name)
    ensure_table(uri, to_arrow_schema(out.schema), table.partition_by,
                 config.warehouse.storage_options, description=table.description)
    query_name = table.qualified_name
    topic = kafka_dataset(config.kafka.bootstrap_servers, config.source(table.source).topic)
    writer = BronzeWriter(
        table, IdempotentAppender(uri, app_id=query_name, partition_by=table.partition_by,
                                  storage_options=config.warehouse.storage_options),
        query_name, printer, topic, skip_held=reset_to is not None)
    spec = QuerySpec(query_name, topic, None, [uri], {uri: lambda: out})
    tracker = (lineage or Lineage.off(config)).query(spec, spark.version)
    return start_batches(out, config, query_name, writer, writer.binding, tracker)


@dataclass(frozen=True)
class Selection:
    """The tables a run builds, per layer."""

    bronze: list[BronzeTable]
    silver: list[SilverTable]
    gold: list[GoldTable]


def select_tables(bronze: Sequence[BronzeTable], silver: Sequence[SilverTable],
                  gold: Sequence[GoldTable], names: Sequence[str] | None) -> Selection:
    """The tables named, or all of them. ``bronze.orders`` names one table; a bare name
    (``orders``) names the table of that name in every layer."""
    if not names:
        return Selection(list(bronze), list(silver), list(gold))
    known = [t.qualified_name for t in bronze] + [t.qualified_name for t in silver] \
        + [t.qualified_name for t in gold]
    chosen: set[str] = set()
    for n in names:
        matches = [q for q in known if q == n or q.split(".", 1)[1] == n]
        if not matches:
            raise LakehouseError(ErrorCode.UNKNOWN_SOURCE,
                                 f"no table {n!r} (defined: {', '.join(sorted(known))})",
                                 hint="definitions live in bronze/, silver/ and gold/")
        chosen.update(matches)
    return Selection([t for t in bronze if t.qualified_name in chosen],
                     [t for t in silver if t.qualified_name in chosen],
                     [t for t in gold if t.qualified_name in chosen])


@dataclass
class RunSummary:
    """What a run did, per query."""

    queries: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def run(config: Config, *, until_idle: bool, tables: Sequence[str] | None = None,
        spark: SparkSession | None = None, printer: Printer = print,
        then: Callable[[], None] | None = None,
        bronze_reset: Mapping[str, str] | None = None) -> RunSummary:
    """Run the pipelines. ``until_idle``: process everything available, then stop;
    otherwise run until Ctrl-C / SIGTERM, then stop cleanly between micro-batches.
    ``then`` (with ``until_idle``) runs once everything is processed, with the queries
    still running; what it produces is processed too before the run stops.
    ``bronze_reset``: bronze table -> JSON offsets to start it from (see start_bronze)."""
    from lakehouse.gold import start_gold
    from lakehouse.silver import load_plan, start_silver
    selection = select_tables(discover_bronze(), discover_silver(), discover_gold(), tables)
    chosen, silver = selection.bronze, selection.silver
    for t in chosen:
        config.source(t.source)  # unknown sources fail before Spark starts
    for s in silver:
        load_plan(config, s)  # so do bad contracts and suites
    created = ensure_source_topics(config, [t.source for t in chosen])
    for name in created:
        printer(f"created topic {name}")
    started = time.monotonic()
    own_session = spark is None
    spark = spark or _session(config, printer)
    listener = _ProgressListener(printer)
    spark.streams.addListener(listener)
    lineage = Lineage.from_config(config)
    queries: list[StreamingQuery] = []
    try:
        for t in chosen:
            queries.append(_initialized(start_bronze(
                spark, config, t, printer, lineage,
                (bronze_reset or {}).get(t.qualified_name))))
            printer(f"started {t.qualified_name} <- topic {config.source(t.source).topic}")
        for s in silver:
            queries.append(_initialized(start_silver(spark, config, s, printer, lineage)))
            printer(f"started {s.qualified_name} <- bronze.{s.bronze} "
                    f"(contract and suite {s.contract})")
        for g in selection.gold:
            queries.append(_initialized(start_gold(spark, config, g, printer, lineage)))
            printer(f"started {g.qualified_name} <- silver.{g.silver}")
        if until_idle:
            for q in queries:
                _await(q.processAllAvailable, q)
            if then is not None:
                then()  # more input while the queries keep running
                for q in queries:
                    _await(q.processAllAvailable, q)
        else:
            _run_forever(queries, printer)
    finally:
        for q in queries:
            if q.isActive:
                q.stop()
            lineage.finish(q.name, _failure(q))
        lineage.close()
        spark.streams.removeListener(listener)
        if own_session:
            spark.stop()
    return RunSummary({q.name: listener.rows.get(q.name, 0) for q in queries},
                      time.monotonic() - started)


def _session(config: Config, printer: Printer) -> SparkSession:
    from lakehouse.spark import build_session
    printer(f"starting Spark ({config.spark.master}) ...")
    return build_session(config)


def _initialized(query: StreamingQuery, timeout: float = 120.0) -> StreamingQuery:
    """Wait until the query's sources are initialized before the next query starts.

    Every Python source starts a Python process that must connect back to the JVM within
    Spark's fixed 10 s; several queries starting at once on a small machine can miss it
    ("Python worker failed to connect back"). Starting them one by one avoids that.
    """
    deadline = time.monotonic() + timeout
    while query.isActive and query.status["message"] == "Initializing sources" \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    if not query.isActive and query.exception() is not None:
        raise stream_error(query.name or "", query.exception())  # type: ignore[arg-type]
    return query


def _failure(query: StreamingQuery) -> LakehouseError | None:
    """Why a stopped query failed (our error, caused by Spark's), or None."""
    exc = query.exception()
    if exc is None:
        return None
    error = stream_error(query.name, exc)
    error.__cause__ = exc
    return error


def _await(call: Callable[[], Any], query: StreamingQuery) -> None:
    try:
        call()
    except StreamingQueryException as exc:
        raise stream_error(query.name, exc) from None


def stream_error(name: str, exc: BaseException) -> LakehouseError:
    """Turn Spark's wrapped failure back into our error when one is inside."""
    text = str(exc)
    for code in ErrorCode:
        marker = f"[{code.value}]"
        if marker in text:
            detail = text[text.index(marker) + len(marker):].strip().splitlines()
            hint = next((ln.split("hint:", 1)[1].strip() for ln in detail if "hint:" in ln), "")
            return LakehouseError(code, f"query {name} stopped: {detail[0] if detail else ''}",
                                  hint=hint)
    first = next((ln for ln in text.splitlines() if ln.strip()), text)
    return LakehouseError(ErrorCode.STREAM_FAILED, f"query {name} failed: {first}",
                          hint="see the Spark log above; restarting resumes from the checkpoint")


def _run_forever(queries: list[StreamingQuery], printer: Printer) -> None:
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        printer(f"received signal {signum}; stopping after the current micro-batch ...")
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    printer("running; press Ctrl-C to stop")
    try:
        while not stop.is_set():
            for q in queries:
                if not q.isActive:
                    exc = q.exception()
                    if exc is not None:
                        raise stream_error(q.name, exc)
                    return
            stop.wait(1.0)
    except KeyboardInterrupt:
        printer("interrupted; stopping cleanly ...")
    finally:
        signal.signal(signal.SIGTERM, previous)
        for q in queries:
            q.stop()
        printer("stopped; every committed batch is in the tables, the rest resumes next run")


class _ProgressListener(StreamingQueryListener):
    """Counts rows per query (progress lines come from the writers themselves)."""

    def __init__(self, printer: Printer) -> None:
        self.printer = printer
        self.rows: dict[str, int] = {}

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        p = event.progress
        self.rows[p.name] = self.rows.get(p.name, 0) + int(p.numInputRows)

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        if event.exception:
            print(f"query {event.id} terminated with an error", file=sys.stderr)
