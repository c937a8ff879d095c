"""Sends OpenLineage events through the configured transports, off the batch's path.

Events are built by one background thread, in the order they were submitted, and each is
sent through one ``CompositeTransport`` of the configured transports (a file, the
non-blocking ``AsyncHttpTransport``, the console): reading a table's schema or a commit's
size never slows a micro-batch, and a lineage server that is down delays neither the
pipeline nor the file. Every failure is logged, never raised into the pipeline; a full
build queue drops events with a warning.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openlineage.client.transport.composite import CompositeConfig, CompositeTransport

from lakehouse.config import Config

log = logging.getLogger(__name__)

Build = Callable[[], Any]
"""Returns the event to send (built on the worker thread), or None to send nothing."""


def transport(config: Config) -> CompositeTransport | None:
    """Every transport the config turns on, as one transport (None when there is none)."""
    lc = config.lineage
    parts: dict[str, dict[str, Any]] = {}
    if lc.file:
        path = config.lineage_file
        if "://" not in path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        parts["file"] = {"type": "file", "log_file_path": path, "append": True}
    if lc.http_url:
        parts["http"] = {
            "type": "async_http", "url": lc.http_url, "endpoint": lc.http_endpoint,
            "timeout": lc.http_timeout_seconds,
            "auth": {"type": "api_key", "apiKey": lc.http_api_key} if lc.http_api_key else {},
            "retry": {"total": 2, "backoff_factor": 0.3,
                      "status_forcelist": [500, 502, 503, 504]}}
    if lc.console:
        parts["console"] = {"type": "console"}
    if not parts:
        return None
    if "http" in parts and not any(isinstance(f, OneLineFailures) for f in HTTP_LOG.filters):
        HTTP_LOG.addFilter(OneLineFailures())
    return CompositeTransport(CompositeConfig(transports=parts, continue_on_failure=True))


HTTP_LOG = logging.getLogger("openlineage.client.transport.async_http")


class OneLineFailures(logging.Filter):
    """The async HTTP transport logs every event it could not send, with a traceback: keep
    one line (with the cause) per ``every`` seconds, so a lineage server that is down does
    not flood the job's output; the count is in the summary ``Emitter.close`` logs."""

    def __init__(self, every: float = 30.0) -> None:
        super().__init__()
        self.every = every
        self._next = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg, record.args = f"{record.getMessage()}: {record.exc_info[1]}", ()
            record.exc_info = None
        now = time.monotonic()
        if record.levelno >= logging.ERROR and now < self._next:
            return False
        self._next = now + self.every if record.levelno >= logging.ERROR else self._next
        return True


class Emitter:
    """Builds events on one background thread, in submission order, and sends each
    through ``transport``. ``failed`` counts builds that raised."""

    def __init__(self, transport: CompositeTransport | None, capacity: int = 10_000) -> None:
        self.transport = transport
        self.failed = 0
        self._queue: queue.Queue[Build | None] = queue.Queue(capacity)
        self._thread: threading.Thread | None = None
        if transport is not None:
            self._thread = threading.Thread(target=self._work, name="lineage-builder",
                                            daemon=True)
            self._thread.start()

    def submit(self, build: Build) -> None:
        """Queue an event; returns at once."""
        if self.transport is None:
            return
        try:
            self._queue.put_nowait(build)
        except queue.Full:
            log.warning("lineage: event queue full (%d); dropping an event",
                        self._queue.maxsize)

    def close(self, timeout: float = 30.0) -> None:
        """Build and send what is queued (at most ``timeout`` seconds per stage), then stop."""
        if self._thread is None or self.transport is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("lineage: %d events still to build after %.0fs; not waiting longer",
                        self._queue.qsize(), timeout)
        self._thread = None
        try:
            if not self.transport.close(timeout):
                log.warning("lineage: events not all sent within %.0fs", timeout)
        except Exception as exc:
            log.warning("lineage: closing the transports failed: %s", exc)
        for t in self.transport.transports:
            stats = t.get_stats() if hasattr(t, "get_stats") else {}
            if stats.get("failed") or stats.get("pending"):
                log.warning("lineage: %s: %d events sent, %d not sent in time, %d failed (the "
                            "pipeline goes on)", t.name, stats["success"], stats["pending"],
                            stats["failed"])

    def _work(self) -> None:
        assert self.transport is not None
        while (build := self._queue.get()) is not None:
            try:
                event = build()
            except Exception as exc:
                self.failed += 1
                log.warning("lineage: could not build an event: %s", exc, exc_info=True)
                continue
            if event is None:
                continue
            try:
                self.transport.emit(event)
            except Exception as exc:
                log.warning("lineage: sending failed (the pipeline goes on): %s", exc)
