"""The runs of a process's streaming queries and micro-batches, as OpenLineage events.

The Spark listener (``lakehouse.lineage.listener``) reports every Spark action, but a
streaming query's foreachBatch hides its Kafka source and its micro-batches from it
(OpenLineage #3398, #1581). This module adds exactly those runs: ``Lineage.query`` gives
each streaming query a ``QueryLineage`` that ``start_batches`` drives: ``started`` once
Spark gives the query its run id, then ``tracked`` around every micro-batch, and
``finished`` when the query stops.

A query run's parent is the listener's application run of the session; a micro-batch
run's parent is its query run and its root the application's root, so a lineage server
shows one tree. Run ids exist (and go into every Delta commit) even when emission is
switched off.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from openlineage.client.event_v2 import RunState
from openlineage.client.uuid import generate_new_uuid
from pyspark.sql import SparkSession

from lakehouse.batch import BatchIO, BatchRun, QuerySpec, Written, storage_dataset
from lakehouse.config import Config
from lakehouse.io.delta_log import commit_size, open_table
from lakehouse.lineage import events
from lakehouse.lineage.columns import ColumnLineage, plan_nodes, trace
from lakehouse.lineage.emitter import Emitter, transport
from lakehouse.lineage.listener import ApplicationRun, RunRef, application_run

log = logging.getLogger(__name__)


def new_run_id() -> str:
    """A new OpenLineage run id (a UUIDv7: sortable by time)."""
    return str(generate_new_uuid())


class Lineage:
    """Lineage of one process: the emitter, the session's application run, and every
    query's runs."""

    def __init__(self, config: Config, emitter: Emitter, app: ApplicationRun | None) -> None:
        self.config = config
        self.emitter = emitter
        self.app = app
        self.queries: dict[str, QueryLineage] = {}

    @classmethod
    def for_session(cls, config: Config, spark: SparkSession) -> Lineage:
        """Emit through the configured transports (none when lineage is switched off),
        under the application run of ``spark``'s listener."""
        emitter = Emitter(transport(config) if config.lineage.enabled else None)
        conf = dict(spark.sparkContext.getConf().getAll())
        return cls(config, emitter, application_run(conf))

    @classmethod
    def off(cls, config: Config) -> Lineage:
        """Track run ids only (for commit metadata); emit nothing."""
        return cls(config, Emitter(None), None)

    def query(self, spec: QuerySpec) -> QueryLineage:
        """The lineage of one streaming query about to start."""
        q = QueryLineage(spec, self.config.lineage_namespace, self.emitter, self.app,
                         dict(self.config.warehouse.storage_options))
        self.queries[spec.name] = q
        return q

    def finish(self, name: str, error: BaseException | None) -> None:
        """The query ``name`` stopped (with ``error`` if it failed)."""
        q = self.queries.get(name)
        if q is not None:
            q.finished(error)

    def close(self, timeout: float = 30.0) -> None:
        """Send every queued event, then stop the emitter."""
        self.emitter.close(timeout)


class QueryLineage:
    """The run of one streaming query and the runs of its micro-batches."""

    def __init__(self, spec: QuerySpec, namespace: str, emitter: Emitter,
                 app: ApplicationRun | None, storage_options: dict[str, str]) -> None:
        self.spec = spec
        self.namespace = namespace
        self.emitter = emitter
        self.app = app
        self.storage_options = storage_options
        self.run_id = new_run_id()
        self.app_id = ""
        self._ready = threading.Event()
        self._done = False

    # -- the query's run -----------------------------------------------------------------

    def started(self, run_id: str, app_id: str) -> None:
        """The query started: ``run_id`` is Spark's run id of the query, ``app_id`` the
        Delta transaction app id of its writes. Batches wait for this."""
        self.run_id = run_id
        self.app_id = app_id
        self._ready.set()
        self.emitter.submit(lambda: self._query_event(RunState.START))

    def finished(self, error: BaseException | None) -> None:
        """The query stopped: COMPLETE, or FAIL with ``error``."""
        if self._done:
            return
        self._done = True
        if error is None:
            self.emitter.submit(lambda: self._query_event(RunState.COMPLETE))
        else:
            message, stack = _describe(error)
            self.emitter.submit(lambda: self._query_event(RunState.FAIL, message, stack))

    # -- micro-batch runs ----------------------------------------------------------------

    def tracked(self, batch_id: int, work: Callable[[BatchRun], BatchIO],
                timeout: float = 120.0) -> BatchIO:
        """Run one micro-batch's ``work`` as a run: START, then COMPLETE with what it read
        and wrote, or FAIL with its error (raised again; nothing it did not commit is in the
        tables). Spark may run the first batch before ``start()`` returned the query's ids:
        it waits for ``started``."""
        self._ready.wait(timeout)
        run = BatchRun(new_run_id(), self.run_id, batch_id, self.app_id)
        self.emitter.submit(lambda: self._batch_event(run, RunState.START, None))
        try:
            io = work(run)
        except BaseException as exc:
            message, stack = _describe(exc)
            self.emitter.submit(lambda: self._batch_event(run, RunState.FAIL, None, message, stack))
            raise
        self.emitter.submit(lambda: self._batch_event(run, RunState.COMPLETE, io))
        return io

    # -- building events (on the emitter's thread) -----------------------------------------

    def _query_event(self, state: RunState, message: str | None = None,
                     stack: str | None = None) -> Any:
        spec = self.spec
        facets: dict[str, Any] = {}
        if self.app is not None:
            facets["parent"] = events.parent_facet(self.app.run, self.app.root)
        if message is not None:
            facets["errorMessage"] = events.error_facet(message, stack)
        # START carries the column lineage, with the schemas of the datasets it names.
        start = state == RunState.START
        source = self._schema(spec.input_uri) if start else None
        columns = self._column_lineage(source) if start else {}
        outputs = [events.output_dataset(storage_dataset(uri), None, columns.get(uri),
                                         spec.input, self._schema(uri) if start else None)
                   for uri in spec.outputs]
        inputs = [events.input_dataset(spec.input, schema=source)]
        return events.run_event(state, events.job(self.namespace, spec.name, False),
                                self.run_id, facets, inputs, outputs)

    def _batch_event(self, run: BatchRun, state: RunState, io: BatchIO | None,
                     message: str | None = None, stack: str | None = None) -> Any:
        spec = self.spec
        query = RunRef(self.namespace, spec.name, run.query_run_id)
        facets: dict[str, Any] = {
            "parent": events.parent_facet(query, self.app.root if self.app else query),
            "lakehouse_batch": events.BatchRunFacet(batchId=run.batch_id, query=spec.name,
                                                    appId=self.app_id,
                                                    producer=events.PRODUCER)}
        if message is not None:
            facets["errorMessage"] = events.error_facet(message, stack)
        # Every event of a batch names all the query's datasets, with what it read and
        # wrote once it completed: a lineage server keys a job's version on its datasets,
        # and an empty batch must not make the job look disconnected.
        writes = {} if io is None else {w.uri: w for w in io.writes}
        inputs = [events.input_dataset(spec.input)] if io is None else [
            events.input_dataset(r.dataset, r.versions, r.offsets, r.assertions)
            for r in io.reads]
        outputs = [events.output_dataset(storage_dataset(uri),
                                         self._stats(writes[uri]) if uri in writes else None)
                   for uri in dict.fromkeys([*spec.outputs, *writes])]
        return events.run_event(state, events.job(self.namespace, spec.name, True),
                                run.run_id, facets, inputs, outputs)

    def _column_lineage(self, source: pa.Schema | None) -> dict[str, ColumnLineage]:
        """Each output's column lineage, traced from its DataFrame's plan (and kept to
        the columns of the ``source`` table, when it is one)."""
        out: dict[str, ColumnLineage] = {}
        for uri, derive in self.spec.derivations.items():
            try:
                lineage = trace(plan_nodes(derive()))
            except Exception as exc:  # lineage never stops a pipeline
                log.warning("lineage: no column lineage for %s: %s", uri, exc)
                continue
            out[uri] = lineage if source is None else lineage.restricted_to(set(source.names))
        return out

    def _schema(self, uri: str | None) -> pa.Schema | None:
        """A Delta table's current schema (None for a topic, or a table not yet made)."""
        table = None if uri is None else open_table(uri, self.storage_options)
        return None if table is None else pa.schema(table.schema().to_arrow())

    def _stats(self, written: Written) -> events.CommitStats | None:
        """The version a batch committed, with its rows, bytes and files."""
        if written.version is None:
            return None
        size = commit_size(written.uri, written.version) or (None, None)
        return events.CommitStats(written.version, written.rows, *size)


def _describe(error: BaseException) -> tuple[str, str]:
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return message, stack[-8000:]
