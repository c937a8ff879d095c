"""Builds and runs the streaming queries: Kafka -> bronze -> silver -> gold, in the
configured shape (``streaming.shape``).

In the ``tables`` shape each table gets its own query, checkpoint and Delta writer, so
tables can be restarted and replayed independently; in the ``chained`` shape one query
per source drives its silver and gold tables too (``lakehouse.layers.chain``). Bronze reads
Kafka with Spark's Kafka connector; silver reads its bronze table and gold its silver
table as Delta streams (the change data feed, for each row's commit version). Writes go
through ``foreachBatch`` into delta-spark with the batch id as the Delta transaction
version (see ``lakehouse.io.delta``).
"""


from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException, StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from lakehouse import graph
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.checkpoints import damage, remove_unstarted
from lakehouse.io.delta import keep_properties
from lakehouse.io.kafka_admin import TopicSpec, ensure_topics
from lakehouse.io.locks import table_locks
from lakehouse.io.object_store import unanswered
from lakehouse.layers.bronze import start_bronze
from lakehouse.lineage.tracking import Lineage
from lakehouse.observe.events import EventLog, table_name
from lakehouse.observe.metrics import serving
from lakehouse.outage import Outage
from lakehouse.printing import Printer
from lakehouse.registry import BronzeTable, GoldTable, SilverTable, bronze_source
from lakehouse.schemas import publish
from lakehouse.spark import stop_session

log = logging.getLogger(__name__)


def ensure_source_topics(config: Config, sources: Sequence[str]) -> list[str]:
    """Create these sources' topics if missing, with their configured partition counts."""
    specs = [TopicSpec(s.topic, s.partitions, s.replication_factor)
             for s in map(config.source, sources)]
    return ensure_topics(config.kafka.bootstrap_servers, specs, config.kafka.client_properties)


@dataclass
class RunSummary:
    """What a run did, per query."""

    queries: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def run(pipeline: graph.Graph, *, until_idle: bool, tables: Sequence[str] | None = None,
        spark: SparkSession | None = None, printer: Printer = print,
        then: Sequence[Callable[[], None]] = (),
        bronze_reset: Mapping[str, str] | None = None) -> RunSummary:
    """Run the pipelines, in the configured shape (``streaming.shape``: a query per table,
    or chained per source). ``until_idle``: process everything available, then stop;
    otherwise run until Ctrl-C / SIGTERM, then stop cleanly between micro-batches.
    ``then`` (with ``until_idle``): steps run in turn once everything is processed, with
    the queries still running; what each produces is processed before the next step, and
    before the run stops.
    ``bronze_reset``: bronze table -> JSON offsets to start it from (see start_bronze)."""
    from lakehouse.layers.routing import load_plan
    # Unknown tables and sources, bad contracts and suites fail before Spark starts.
    config = pipeline.config
    selected = pipeline.select(tables)
    if not tables:
        for line in pipeline.warnings():
            printer(f"warning: {line}")
    chosen = [q.definition for q in selected if isinstance(q.definition, BronzeTable)]
    silver = [q.definition for q in selected if isinstance(q.definition, SilverTable)]
    gold = [q.definition for q in selected if isinstance(q.definition, GoldTable)]
    for s in silver:
        load_plan(pipeline, s)
    # The schemas silver reads the Avro sources with, from their contracts: a contract the
    # subject's level forbids is refused here, before anything is read. (Bronze lands the
    # bytes untouched and needs no registry.)
    for published in publish(config, silver_sources(config, silver)):
        printer(f"schema of {published.source}: subject {published.subject}, id "
                f"{published.schema_id}")
    with table_locks(config.warehouse.root, [q.definition.qualified_name for q in selected],
                     "lakehouse run"):
        for q in selected:
            check_checkpoint(pipeline, q.definition.qualified_name, printer)
        keep_horizon(pipeline, selected, printer)
        created = ensure_source_topics(config, [t.source for t in chosen])
        for name in created:
            printer(f"created topic {name}")
        try:
            return _run(pipeline, chosen, silver, gold, until_idle=until_idle, spark=spark,
                        printer=printer, then=then, bronze_reset=bronze_reset)
        except Exception as exc:  # on a store that stopped answering: that is the cause
            gone = unanswered(config.storage.store, config.store_buckets)
            if gone is None:
                raise
            raise gone from exc


def silver_sources(config: Config, silver: Sequence[SilverTable]) -> list[str]:
    """The configured sources the silver tables read (the ones that need the registry when
    they are Avro)."""
    return sorted({bronze_source(s.bronze) for s in silver} & set(config.source_names))


def selected_silver(pipeline: graph.Graph, tables: Sequence[str] | None
                    ) -> list[SilverTable]:
    """The silver tables a run of ``tables`` (None: all) starts."""
    return [q.definition for q in pipeline.select(tables)
            if isinstance(q.definition, SilverTable)]


def keep_horizon(pipeline: graph.Graph, selected: Sequence[graph.Query],
                 printer: Printer) -> None:
    """Before any query starts: the tables the run writes keep versions readable back to
    the audit horizon (their Delta retention properties, set where they differ, e.g. after
    the horizon changed: change it with the jobs stopped, as a property change fails a
    concurrent writer's commit)."""
    config = pipeline.config
    wh, retention = config.warehouse, config.retention
    uris = {n.uri for q in selected for n in pipeline.outputs(q.name)}
    uris |= {wh.table_uri("gold", q.definition.state_name) for q in selected
             if isinstance(q.definition, GoldTable)}
    uris |= {wh.table_uri("_system", name) for name in ("events", "rules")}
    for uri in sorted(uris):
        if keep_properties(uri, retention.delta_properties, wh.storage_options):
            printer(f"{table_name(uri, wh.root)}: keeps versions {retention.audit_horizon_days:g} "
                    "days back (retention.audit_horizon_days)")


def check_checkpoint(pipeline: graph.Graph, table: str, printer: Printer) -> None:
    """Fail, naming the way out, if the checkpoint of ``table``'s query is damaged (Spark's
    own failure would name neither the file nor the remedy); remove one that holds no
    progress (its query was killed before it planned a batch)."""
    checkpoint = pipeline.query(table).checkpoint
    problem = damage(checkpoint)
    if problem:
        raise LakehouseError(
            ErrorCode.CHECKPOINT_DAMAGED, f"the checkpoint of {table} is damaged: {problem}",
            hint=f"`lakehouse checkpoint reset {table}` moves it aside; the next run resumes "
                 "the table from its own commits (nothing lost, nothing twice)",
            table=table, checkpoint=checkpoint)
    if remove_unstarted(checkpoint):
        printer(f"[{table}] removed a checkpoint without progress (its query was stopped "
                "before its first batch); the table resumes from its own commits")


def _run(pipeline: graph.Graph, chosen: Sequence[BronzeTable], silver: Sequence[SilverTable],
         gold: Sequence[GoldTable], *, until_idle: bool, spark: SparkSession | None,
         printer: Printer, then: Sequence[Callable[[], None]],
         bronze_reset: Mapping[str, str] | None) -> RunSummary:
    config = pipeline.config
    from lakehouse.layers.chain import start_chain
    from lakehouse.layers.gold import start_gold
    from lakehouse.layers.silver import prepare_tables, start_silver
    started = time.monotonic()
    own_session = spark is None
    spark = spark or _session(config, printer)
    events = EventLog.for_run(config)
    listener = _ProgressListener(events)
    spark.streams.addListener(listener)
    lineage = Lineage.for_session(config, spark)
    queries: list[StreamingQuery] = []
    driven: dict[str, list[str]] = {}
    """Chained shape: bronze query -> the tables its micro-batches drive."""
    readers: dict[str, Callable[[], StreamingQuery]] = {}
    """The queries that read Kafka, and how to start each again (from its checkpoint)."""
    # Every step of the shutdown runs, last registered first, even after one fails.
    cleanup = contextlib.ExitStack()
    if own_session:
        cleanup.callback(stop_session, spark)
    cleanup.callback(spark.streams.removeListener, listener)
    try:
        cleanup.enter_context(serving(events, config.observe, printer))
        cleanup.callback(events.close)
        cleanup.callback(lineage.close)
        cleanup.callback(_stop_all, queries, driven, lineage, printer)
        for s in silver:
            prepare_tables(spark, pipeline, s, printer)
        for t in chosen:
            reset = (bronze_reset or {}).get(t.qualified_name)
            topic = config.source(t.source).topic
            if config.streaming.shape == "chained":
                stages = [(s, [g for g in gold if g.silver == s.name])
                          for s in silver if s.bronze == t.name]
                query, names = start_chain(spark, pipeline, t, stages, printer, lineage, reset,
                                           events)
                readers[query.name] = partial(_chain_query, spark, pipeline, t, stages,
                                              printer, lineage, None, events)
                driven[query.name] = names
            else:
                query, names = start_bronze(spark, pipeline, t, printer, lineage, reset, events), []
                readers[query.name] = partial(start_bronze, spark, pipeline, t, printer, lineage,
                                              None, events)
            rides = f", then {', '.join(names)} in each micro-batch" if names else ""
            printer(f"started {t.qualified_name} <- topic {topic}{rides}")
            queries.append(_initialized(query))
        chained = {name for names in driven.values() for name in names}
        downstream = [*((s.qualified_name, partial(start_silver, spark, pipeline, s),
                         f"bronze.{s.bronze} (contract and suite {s.contract})") for s in silver),
                      *((g.qualified_name, partial(start_gold, spark, pipeline, g),
                         f"silver.{g.silver}") for g in gold)]
        for name, start, reads in downstream:
            if name not in chained:
                queries.append(_initialized(start(printer, lineage, events)))
                printer(f"started {name} <- {reads}")
        if until_idle:
            for q in queries:
                _await(q)
            for step in then:
                step()  # more input while the queries keep running
                for q in queries:
                    _await(q)
        else:
            _run_forever(queries, readers, Outage(
                config.kafka.bootstrap_servers, config.kafka.client_properties,
                config.kafka.unavailable_timeout_seconds, printer), printer)
    finally:
        cleanup.close()
    return RunSummary({q.name: listener.rows.get(q.name, 0) for q in queries},
                      time.monotonic() - started)


def _stop_all(queries: Sequence[StreamingQuery], driven: Mapping[str, Sequence[str]],
              lineage: Lineage, printer: Printer) -> None:
    """Stop the queries and end their lineage runs (with the failure of one that failed)."""
    for q in queries:
        stop_query(q, printer)
        for name in [q.name, *driven.get(q.name, [])]:
            lineage.finish(name, _failure(q))


def stop_query(query: StreamingQuery, printer: Printer) -> None:
    """Stop a query if it runs; one whose thread does not end within
    ``spark.sql.streaming.stopTimeout`` is left behind (it dies with the JVM), said so."""
    if not query.isActive:
        return
    try:
        query.stop()
    except (Py4JJavaError, PySparkException) as exc:  # Spark's TimeoutException
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), repr(exc))
        printer(f"query {query.name} did not stop in time ({first[:200]}); what it had not "
                "committed runs again on the next start")


def _chain_query(*args: Any) -> StreamingQuery:
    from lakehouse.layers.chain import start_chain
    return start_chain(*args)[0]


def _session(config: Config, printer: Printer) -> SparkSession:
    from lakehouse.spark import build_session
    printer(f"starting Spark ({config.spark.master}) ...")
    return build_session(config, streaming=True)


def _initialized(query: StreamingQuery, timeout: float = 120.0) -> StreamingQuery:
    """Wait until the query's sources are initialized before the next query starts: a
    query that cannot start (a missing topic, an unreadable table) fails the run with its
    own error, before the queries downstream of it start.
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


def _await(query: StreamingQuery) -> None:
    """Process everything available to the query, failing with our error if it fails."""
    try:
        query.processAllAvailable()
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


def _run_forever(queries: list[StreamingQuery],
                 readers: Mapping[str, Callable[[], StreamingQuery]], outage: Outage,
                 printer: Printer) -> None:
    """Run until a signal, Ctrl-C, or a query failing; a Kafka query failing while the
    broker is away is started again once it is back (``lakehouse.outage``)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        printer(f"received signal {signum}; stopping after the current micro-batch ...")
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    printer("running; press Ctrl-C to stop")
    try:
        while not stop.is_set():
            for n, q in enumerate(queries):
                if q.isActive:
                    continue
                exc = q.exception()
                if exc is None:
                    return
                error = stream_error(q.name, exc)
                if q.name not in readers or not outage.caused(outage.answering(),
                                                              outage.clock()):
                    raise error
                again = outage.restart(q.name, readers[q.name], error.message, stop)
                if again is None:
                    return
                queries[n] = again
            outage.check()
            stop.wait(1.0)
    except KeyboardInterrupt:
        printer("interrupted; stopping cleanly ...")
    finally:
        signal.signal(signal.SIGTERM, previous)
        for q in queries:
            stop_query(q, printer)
        printer("stopped; every committed batch is in the tables, the rest resumes next run")


class _ProgressListener(StreamingQueryListener):
    """Counts rows per query and hands each batch's progress to the event log (progress
    lines come from the writers themselves). Spark calls it on a thread of its own."""

    def __init__(self, events: EventLog) -> None:
        self.events = events
        self.rows: dict[str, int] = {}

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        p = event.progress
        self.rows[p.name] = self.rows.get(p.name, 0) + int(p.numInputRows)
        self.events.progress(json.loads(p.json))

    def onQueryTerminated(self, event: Any) -> None:
        if event.exception:
            print(f"query {event.id} terminated with an error", file=sys.stderr)
