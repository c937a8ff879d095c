"""The event log: one row per micro-batch of every pipeline, in ``_system.events``.

Two halves meet per batch. What the project's writer did (``BatchIO``: rows read and
written, quarantined, duplicates, the Kafka timestamps of its records) is recorded as the
batch ends; Spark's progress for that batch (phase durations, rates, source offsets,
watermark, state) comes after it, from a ``StreamingQueryListener``. ``EventLog`` pairs
them by (pipeline, batch id), and a thread of its own appends the rows to the Delta table
with delta-rs every ``observe.flush_seconds``: no Spark job, nothing on the batch's path,
and a write that fails is reported once and retried at the next flush, never raised into
a batch. A chained stage (it runs inside its bronze query's batch) has no progress of its
own: its row is complete when its work ends.

``lakehouse query "select * from _system.events"`` reads it; status, SLOs, metrics and the
report are computed from it (``lakehouse.observe.figures``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from lakehouse import steps
from lakehouse.batch import BatchIO
from lakehouse.config import Config
from lakehouse.io.delta import Appender

log = logging.getLogger(__name__)

_TS = pa.timestamp("us", tz="UTC")
_COUNTS = pa.map_(pa.string(), pa.int64())
SCHEMA = pa.schema([
    ("pipeline", pa.string()), ("layer", pa.string()), ("run_id", pa.string()),
    ("batch_id", pa.int64()), ("trigger_time", _TS), ("ended_at", _TS),
    ("event_date", pa.date32()),
    ("duration_ms", _COUNTS), ("input_rows", pa.int64()),
    ("input_rows_per_second", pa.float64()), ("processed_rows_per_second", pa.float64()),
    ("output_rows", _COUNTS), ("quarantined", pa.int64()), ("duplicates", pa.int64()),
    ("kafka_lag", pa.int64()), ("kafka_lag_by_partition", _COUNTS),
    ("input_version", pa.int64()), ("watermark", _TS),
    ("latency_p50_ms", pa.float64()), ("latency_p95_ms", pa.float64()),
    ("latency_p99_ms", pa.float64()), ("latency_max_ms", pa.float64()),
    ("newest_event_time", _TS), ("state_rows", pa.int64()), ("state_bytes", pa.int64()),
    ("error", pa.string()),
])
"""One row per micro-batch. ``duration_ms``: Spark's phases (``addBatch``,
``latestOffset``, ``queryPlanning``, ``walCommit``, ``commitOffsets``, ...) and ``batch``,
the writer's own time; ``output_rows``: table -> rows committed; ``kafka_lag``: records
the broker held past the batch's end (latest offset minus processed, per
``topic:partition`` in ``kafka_lag_by_partition``); ``input_version``: the newest
version of a Delta input the batch read (``lakehouse status`` compares it with the input's
latest: Spark's Delta source reports no latest offset); ``latency_*``: event (its Kafka
timestamp) to this batch's commit, over the batch's records; ``newest_event_time``: the
newest Kafka timestamp the batch committed; ``state_rows``/``state_bytes``: Spark's state
stores (gold keeps its own state in ``gold._<table>_state``, counted by ``lakehouse
tables``)."""

WRITES = "event log writes"
"""The background total (``lakehouse.steps``) of the event log's own writes."""
PROGRESS_WAIT_SECONDS = 60.0
"""A streamed batch's row waits this long for Spark's progress, then is written without
it (the query stopped before Spark posted it)."""
COMPACT_EVERY = 100
"""Every this many writes, the day's small files are compacted (delta-rs ``optimize``);
``lakehouse vacuum`` deletes the replaced ones."""
MAX_PENDING = 20_000
"""Rows kept while the table cannot be written; beyond this the oldest are dropped, said."""


def events_uri(config: Config) -> str:
    """Where the event log lives."""
    return config.warehouse.table_uri("_system", "events")


def table_name(uri: str, warehouse_root: str) -> str:
    """``layer.table`` of a table URI under the warehouse (pure); the URI if it is not."""
    root = warehouse_root.rstrip("/") + "/"
    if not uri.startswith(root):
        return uri
    return ".".join(uri[len(root):].strip("/").split("/")[:2])


def _offsets(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def source_lag(sources: Iterable[Mapping[str, Any]]) -> tuple[int | None, dict[str, int]]:
    """(Kafka records behind, per ``topic:partition``) from a progress's Kafka sources:
    each partition's latest offset minus the batch's end offset (pure)."""
    kafka: dict[str, int] = {}
    for source in sources:
        end, latest = _offsets(source.get("endOffset")), _offsets(source.get("latestOffset"))
        for topic, partitions in latest.items():
            if not isinstance(partitions, dict):
                continue
            done = end.get(topic)
            ends: dict[str, Any] = done if isinstance(done, dict) else {}
            for partition, offset in partitions.items():
                processed = int(ends.get(partition, offset) or 0)
                kafka[f"{topic}:{partition}"] = max(0, int(offset) - processed)
    return (sum(kafka.values()) if kafka else None), kafka


def _instant(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def progress_fields(progress: Mapping[str, Any]) -> dict[str, Any]:
    """The columns a streaming progress fills (pure): ``progress`` as Spark's
    ``StreamingQueryProgress.json`` gives it."""
    lag, by_partition = source_lag(progress.get("sources") or [])
    states = progress.get("stateOperators") or []
    watermark = _instant((progress.get("eventTime") or {}).get("watermark"))
    return {
        "run_id": progress.get("runId"),
        "trigger_time": _instant(progress.get("timestamp")),
        "duration_ms": {k: int(v) for k, v in (progress.get("durationMs") or {}).items()},
        "input_rows": int(progress.get("numInputRows") or 0),
        "input_rows_per_second": _number(progress.get("inputRowsPerSecond")),
        "processed_rows_per_second": _number(progress.get("processedRowsPerSecond")),
        "kafka_lag": lag, "kafka_lag_by_partition": by_partition or None,
        "watermark": watermark if watermark and watermark.year > 1970 else None,
        "state_rows": sum(int(s.get("numRowsTotal") or 0) for s in states) if states else None,
        "state_bytes": sum(int(s.get("memoryUsedBytes") or 0) for s in states)
        if states else None,
    }


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def batch_fields(io: BatchIO | None, seconds: float, ended: datetime, warehouse_root: str,
                 error: str | None = None, taken: Mapping[str, float] | None = None
                 ) -> dict[str, Any]:
    """The columns the project's writer fills for one batch (pure); ``taken``: the
    seconds of its steps (``lakehouse.steps``)."""
    out: dict[str, Any] = {"ended_at": ended, "event_date": ended.date(),
                           "duration_ms": {"batch": int(seconds * 1000),
                                           **steps.as_durations(dict(taken or {}))},
                           "error": error}
    if io is None:
        return out
    out["input_rows"] = sum(r.rows for r in io.reads)
    versions = [r.versions[1] for r in io.reads if r.versions]
    out["input_version"] = max(versions) if versions else None
    out["output_rows"] = {table_name(w.uri, warehouse_root): w.rows for w in io.writes
                          if w.version is not None}
    out["quarantined"] = io.quarantined
    out["duplicates"] = io.duplicates
    if io.event_times is not None:
        out.update(io.event_times.latencies(ended.timestamp() * 1000))
        out["newest_event_time"] = datetime.fromtimestamp(io.event_times.newest / 1000, UTC)
    return out


def merged(batch: Mapping[str, Any], progress: Mapping[str, Any]) -> dict[str, Any]:
    """A batch's row from the writer's fields and Spark's progress (pure): the writer's
    counts win (they are what it committed), Spark's trigger time and run id win, the
    phase durations join."""
    row = dict(batch)
    for key, value in progress.items():
        if key == "duration_ms":
            row[key] = {**value, **(row.get(key) or {})}
        elif value is not None and (key in ("trigger_time", "run_id") or row.get(key) is None):
            row[key] = value
    return row


@dataclass
class Totals:
    """What one pipeline did since this process started (the Prometheus counters)."""

    batches: int = 0
    failed_batches: int = 0
    input_rows: int = 0
    quarantined: int = 0
    duplicates: int = 0
    output_rows: dict[str, int] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)
    """The pipeline's newest row."""

    def add(self, row: Mapping[str, Any]) -> None:
        self.batches += 1
        self.failed_batches += 1 if row.get("error") else 0
        self.input_rows += int(row.get("input_rows") or 0)
        self.quarantined += int(row.get("quarantined") or 0)
        self.duplicates += int(row.get("duplicates") or 0)
        for table, rows in (row.get("output_rows") or {}).items():
            self.output_rows[table] = self.output_rows.get(table, 0) + int(rows)
        self.last = dict(row)


class EventLog:
    """The rows of one process's runs, written to ``_system.events`` in the background
    (``persist``), and their totals in memory (the Prometheus endpoint's figures)."""

    def __init__(self, config: Config, write: Callable[[pa.Table], None] | None = None,
                 enabled: bool = True, persist: bool = True) -> None:
        self.config = config
        self.enabled = enabled
        self.persist = persist
        self.uri = events_uri(config)
        self.flush_seconds = config.observe.flush_seconds
        self._log = Appender(self.uri, ("event_date",), config.warehouse.storage_options,
                             config.retention.delta_properties)
        self._write = write or self._log.append
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._waiting: dict[tuple[str, int], tuple[float, dict[str, Any]]] = {}
        self._totals: dict[str, Totals] = {}
        self._warned: set[str] = set()
        self._dropped = 0
        self._writes = 0
        self._written_alone: deque[tuple[str, int]] = deque(maxlen=10_000)
        """Batches written without their progress (it came late): their progress, if it
        still comes, is not a second row."""
        self._flushing = threading.Lock()
        """One flush at a time: the thread's, or the last one at ``close``."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lakehouse-events",
                                        daemon=True)
        if enabled:
            self._thread.start()

    @classmethod
    def off(cls, config: Config) -> EventLog:
        """A log that records nothing (``observe.events: false``, or a batch command)."""
        return cls(config, enabled=False)

    @classmethod
    def for_run(cls, config: Config) -> EventLog:
        """The log of one ``lakehouse run``, as configured: the table if
        ``observe.events``, the totals also for ``observe.metrics_port`` alone."""
        observe = config.observe
        return cls(config, enabled=observe.events or bool(observe.metrics_port),
                   persist=observe.events)

    # -- what the pipelines report ---------------------------------------------------------

    def batch(self, pipeline: str, batch_id: int, run_id: str | None,
              work: Callable[[], BatchIO], streamed: bool = True) -> BatchIO:
        """Run one batch's ``work`` and record it: its row waits for Spark's progress when
        ``streamed`` (the batch of a streaming query), else it is complete. A failing
        batch is recorded with its error and raised again."""
        if not self.enabled:
            return work()
        began = time.monotonic()
        # Inside another batch (a chained stage), the whole stage is one of its steps.
        with steps.step(pipeline), steps.collecting() as taken:
            try:
                io = work()
            except BaseException as exc:
                self._record(pipeline, batch_id, run_id, None, began, taken, exc, False)
                raise
        self._record(pipeline, batch_id, run_id, io, began, taken, None, streamed)
        return io

    def progress(self, progress: Mapping[str, Any]) -> None:
        """Spark's progress of one batch of a streaming query (from the listener)."""
        if not self.enabled:
            return
        try:
            key = (str(progress.get("name")), int(progress.get("batchId", -1)))
            fields = progress_fields(progress)
            with self._lock:
                waiting = self._waiting.pop(key, None)
                late = key in self._written_alone
            if waiting is None:
                if late or not fields["input_rows"]:
                    return  # written without it already; or a trigger that ran no batch
                waiting = (0.0, {**_identity(key[0], key[1], fields["run_id"]),
                                 **_times(fields)})
            self._add(merged(waiting[1], fields))
        except Exception as exc:  # the event log never fails a pipeline
            self._warn(f"an event log row was lost: {exc!r}")

    def _record(self, pipeline: str, batch_id: int, run_id: str | None, io: BatchIO | None,
                began: float, taken: dict[str, float], error: BaseException | None,
                streamed: bool) -> None:
        try:
            row = {**_identity(pipeline, batch_id, run_id),
                   **batch_fields(io, time.monotonic() - began, datetime.now(UTC),
                                  self.config.warehouse.root,
                                  None if error is None else _first_line(error), taken)}
            row["trigger_time"] = datetime.fromtimestamp(
                row["ended_at"].timestamp() - (time.monotonic() - began), UTC)
            if streamed:
                with self._lock:
                    self._waiting[(pipeline, batch_id)] = (time.monotonic(), row)
            else:
                self._add(row)
        except Exception as exc:
            self._warn(f"an event log row was lost: {exc!r}")

    def _add(self, row: dict[str, Any]) -> None:
        with self._lock:
            if self.persist:
                self._rows.append(row)
            if len(self._rows) > MAX_PENDING:
                self._dropped += len(self._rows) - MAX_PENDING
                del self._rows[:len(self._rows) - MAX_PENDING]
            self._totals.setdefault(row["pipeline"], Totals()).add(row)

    def totals(self) -> dict[str, Totals]:
        """Per pipeline, what it did since this process started (a copy)."""
        with self._lock:
            return {name: replace(t, output_rows=dict(t.output_rows), last=dict(t.last))
                    for name, t in self._totals.items()}

    # -- writing ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def flush(self, everything: bool = False) -> None:
        """Write the complete rows (``everything``: also those still waiting for their
        progress); a failure keeps them for the next flush."""
        with self._flushing:
            with self._lock:
                now = time.monotonic()
                late = [k for k, (at, _) in self._waiting.items()
                        if everything or now - at > PROGRESS_WAIT_SECONDS]
                for key in late:
                    row = self._waiting.pop(key)[1]
                    self._written_alone.append(key)
                    if self.persist:
                        self._rows.append(row)
                    self._totals.setdefault(row["pipeline"], Totals()).add(row)
                rows, self._rows = self._rows, []
            if not rows:
                return
            try:
                with steps.background(WRITES):
                    self._write(pa.Table.from_pylist(rows, schema=SCHEMA))
            except Exception as exc:
                self._warn(f"cannot write the event log {self.uri} ({exc}); its rows are kept "
                           "and written when it can be")
                with self._lock:
                    self._rows[:0] = rows
                return
            self._writes += 1
            if self._writes % COMPACT_EVERY == 0 and self._write == self._log.append:
                try:  # the rows are committed: a compaction that fails is only reported
                    self._log.compact(("event_date", str(rows[-1]["event_date"])))
                except Exception as exc:
                    self._warn(f"cannot compact the event log {self.uri} ({exc}); it is "
                               "tried again after the next writes")

    def close(self, progress_wait: float = 3.0) -> None:
        """Stop the thread and write everything (rows still waiting get ``progress_wait``
        seconds for Spark's last progress events)."""
        if not self.enabled:
            return
        deadline = time.monotonic() + progress_wait
        while self._waiting and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop.set()
        self._thread.join(timeout=30)
        self.flush(everything=True)
        if self._rows:
            log.warning("the event log could not write its last %d rows to %s",
                        len(self._rows), self.uri)
        if self._dropped:
            log.warning("the event log dropped its %d oldest rows (the table could not be "
                        "written)", self._dropped)

    def _warn(self, message: str) -> None:
        kind = message.split("(")[0]
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(message)


def _identity(pipeline: str, batch_id: int, run_id: str | None) -> dict[str, Any]:
    return {"pipeline": pipeline, "layer": pipeline.split(".", 1)[0], "batch_id": batch_id,
            "run_id": run_id}


def _first_line(error: BaseException) -> str:
    try:
        text = str(error).strip()
    except Exception:  # e.g. a py4j error whose JVM is gone
        text = ""
    return (text.splitlines()[0] if text else type(error).__name__)[:2000]


def _times(progress: Mapping[str, Any]) -> dict[str, Any]:
    """When a batch known only from its progress ended (its trigger plus its duration)."""
    began = progress.get("trigger_time") or datetime.now(UTC)
    took = (progress.get("duration_ms") or {}).get("triggerExecution", 0)
    ended = began + timedelta(milliseconds=took)
    return {"ended_at": ended, "event_date": ended.date()}
