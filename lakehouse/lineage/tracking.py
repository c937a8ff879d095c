"""The runs of a process's streaming queries and micro-batches, as OpenLineage events.

``Lineage`` belongs to one ``lakehouse run``; ``Lineage.query`` gives each streaming
query a ``QueryLineage`` that ``start_batches`` drives: ``started`` once Spark gives the
query its run id, then ``batch_started`` / ``batch_completed`` / ``batch_failed`` around
every micro-batch, and ``finished`` when the query stops. Run ids exist (and go into
every Delta commit) even when emission is switched off.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from openlineage.client.event_v2 import RunState
from openlineage.client.uuid import generate_new_uuid

from lakehouse import __version__
from lakehouse.config import Config
from lakehouse.io.delta import commit_size, open_table
from lakehouse.lineage import events
from lakehouse.lineage.columns import ColumnLineage, plan_nodes, trace
from lakehouse.lineage.datasets import BatchIO, BatchRun, QuerySpec, storage_dataset
from lakehouse.lineage.emitter import Emitter, transports

log = logging.getLogger(__name__)


class Lineage:
    """Lineage of one process: the emitter and every query's runs."""

    def __init__(self, config: Config, emitter: Emitter) -> None:
        self.config = config
        self.emitter = emitter
        self.queries: dict[str, QueryLineage] = {}

    @classmethod
    def from_config(cls, config: Config) -> Lineage:
        """Emit through the configured transports (none when lineage is switched off)."""
        sinks = transports(config) if config.lineage.enabled else []
        return cls(config, Emitter(sinks))

    @classmethod
    def off(cls, config: Config) -> Lineage:
        """Track run ids only (for commit metadata); emit nothing."""
        return cls(config, Emitter([]))

    def query(self, spec: QuerySpec, engine_version: str) -> QueryLineage:
        """The lineage of one streaming query about to start."""
        q = QueryLineage(spec, self.config.lineage_namespace, self.emitter, engine_version,
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

    def __init__(self, spec: QuerySpec, namespace: str, emitter: Emitter, engine_version: str,
                 storage_options: dict[str, str]) -> None:
        self.spec = spec
        self.namespace = namespace
        self.emitter = emitter
        self.engine_version = engine_version
        self.storage_options = storage_options
        self.run_id = str(generate_new_uuid())
        self.app_id = ""
        self._ready = threading.Event()
        self._columns: dict[str, ColumnLineage] | None = None
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

    def batch_started(self, batch_id: int, timeout: float = 120.0) -> BatchRun:
        """A micro-batch begins: its run (START is emitted). Spark may run the first batch
        before ``start()`` returned the query's ids: it waits for ``started``."""
        self._ready.wait(timeout)
        run = BatchRun(str(generate_new_uuid()), self.run_id, batch_id, self.app_id)
        self.emitter.submit(lambda: self._batch_event(run, RunState.START, None))
        return run

    def batch_completed(self, run: BatchRun, io: BatchIO) -> None:
        """The micro-batch committed what ``io`` says."""
        self.emitter.submit(lambda: self._batch_event(run, RunState.COMPLETE, io))

    def batch_failed(self, run: BatchRun, error: BaseException) -> None:
        """The micro-batch failed (nothing it did not commit is in the tables)."""
        message, stack = _describe(error)
        self.emitter.submit(lambda: self._batch_event(run, RunState.FAIL, None, message, stack))

    # -- building events (on the emitter's thread) -----------------------------------------

    def _query_event(self, state: RunState, message: str | None = None,
                     stack: str | None = None) -> Any:
        spec = self.spec
        facets: dict[str, Any] = {"processing_engine": events.engine_facet(self.engine_version,
                                                                          __version__)}
        if message is not None:
            facets["errorMessage"] = events.error_facet(message, stack)
        columns = self.columns() if state == RunState.START else {}
        inputs = [events.input_dataset(spec.input, self._facts(spec.input_uri))]
        outputs = [events.output_dataset(storage_dataset(uri), self._facts(uri),
                                         columns.get(uri), spec.input)
                   for uri in spec.outputs]
        return events.run_event(state, events.job(self.namespace, spec.name, False),
                                self.run_id, facets, inputs, outputs)

    def _batch_event(self, run: BatchRun, state: RunState, io: BatchIO | None,
                     message: str | None = None, stack: str | None = None) -> Any:
        spec = self.spec
        facets: dict[str, Any] = {
            "parent": events.parent_facet(self.namespace, spec.name, run.query_run_id),
            "lakehouse_batch": events.BatchRunFacet(batchId=run.batch_id, query=spec.name,
                                                    appId=self.app_id,
                                                    producer=events.PRODUCER)}
        if message is not None:
            facets["errorMessage"] = events.error_facet(message, stack)
        inputs, outputs = [], []
        if io is not None:
            columns = self.columns()
            for read in io.reads:
                facts = self._facts(spec.input_uri, read.versions[1]) \
                    if read.versions and read.dataset == spec.input else None
                inputs.append(events.input_dataset(read.dataset, facts, read.versions,
                                                   read.offsets, read.assertions))
            for w in io.writes:
                facts = self._facts(w.uri, w.version, w.rows) if w.version is not None else None
                outputs.append(events.output_dataset(storage_dataset(w.uri), facts,
                                                     columns.get(w.uri), spec.input))
        return events.run_event(state, events.job(self.namespace, spec.name, True),
                                run.run_id, facets, inputs, outputs)

    def columns(self) -> Mapping[str, ColumnLineage]:
        """Each output's column lineage, traced once from its DataFrame's plan."""
        if self._columns is None:
            known = None
            if self.spec.input_uri is not None:
                facts = self._facts(self.spec.input_uri)
                if facts is not None and facts.schema is not None:
                    known = set(facts.schema.names)
            self._columns = {}
            for uri, derive in self.spec.derivations.items():
                try:
                    lineage = trace(plan_nodes(derive()))
                except Exception as exc:  # lineage never stops a pipeline
                    log.warning("lineage: no column lineage for %s: %s", uri, exc)
                    continue
                self._columns[uri] = lineage if known is None else lineage.restricted_to(known)
        return self._columns

    def _facts(self, uri: str | None, version: int | None = None,
               rows: int | None = None) -> events.TableFacts | None:
        if uri is None:
            return None
        table = open_table(uri, self.storage_options, version)
        if table is None:
            return None
        size = commit_size(uri, version) if version is not None and rows is not None else None
        return events.TableFacts(pa.schema(table.schema().to_arrow()), table.version(),
                                 rows, size[0] if size else None, size[1] if size else None)


def _describe(error: BaseException) -> tuple[str, str]:
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    stack = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return message, stack[-8000:]
