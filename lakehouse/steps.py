"""Where a micro-batch's wall time goes: named steps timed inside the batch's work.

``EventLog.batch`` opens a collection around each batch's work; the writers wrap their
steps (``step("merge silver.orders")``: each Delta write is one, named after its table,
plus the Spark jobs that route or aggregate) and the durations land in the batch's
event-log row, in ``duration_ms`` beside Spark's own phases, as ``step:<name>``.
``lakehouse bench`` reads its breakdown from those rows. Work off the batch's path (the
event log's own writes) adds to process-wide totals instead (``background``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

PREFIX = "step:"
"""``duration_ms`` keys of the steps (Spark's phases have none)."""

_batch: ContextVar[dict[str, float] | None] = ContextVar("lakehouse_steps", default=None)
_background: dict[str, float] = {}
_lock = threading.Lock()


@contextmanager
def collecting() -> Iterator[dict[str, float]]:
    """Collect the steps of the work run inside (seconds per step name); a nested
    collection (a chained stage inside its bronze batch) keeps its steps to itself."""
    steps: dict[str, float] = {}
    token = _batch.set(steps)
    try:
        yield steps
    finally:
        _batch.reset(token)


@contextmanager
def _timed(totals: dict[str, float], name: str, lock: AbstractContextManager[Any]
           ) -> Iterator[None]:
    """Add the seconds the work inside took to ``totals[name]`` (holding ``lock``), however
    it ends."""
    began = time.monotonic()
    try:
        yield
    finally:
        with lock:
            totals[name] = totals.get(name, 0.0) + time.monotonic() - began


def step(name: str) -> AbstractContextManager[None]:
    """Time the work inside as the step ``name`` of the batch being collected (if any)."""
    steps = _batch.get()
    return nullcontext() if steps is None else _timed(steps, name, nullcontext())


def as_durations(steps: dict[str, float]) -> dict[str, int]:
    """Steps as ``duration_ms`` entries (pure)."""
    return {PREFIX + name: int(seconds * 1000) for name, seconds in steps.items()}


def background(name: str) -> AbstractContextManager[None]:
    """Time work done off every batch's path into the process-wide total ``name``."""
    return _timed(_background, name, _lock)


def background_totals() -> dict[str, float]:
    """Seconds spent per background task since this process started (a copy)."""
    with _lock:
        return dict(_background)


def table_of(uri: str) -> str:
    """``layer.table`` from a table URI's last two path parts (pure)."""
    parts = uri.rstrip("/").split("/")
    return ".".join(parts[-2:])
