"""Sends OpenLineage events through the configured transports, off the batch's path.

Events are built by one background thread, in the order they were submitted, and sent
by one thread per transport: reading a table's schema or a commit's size never slows a
micro-batch, and a lineage server that is down delays neither the pipeline nor the file.
Every failure is logged and counted, never raised into the pipeline; a full queue or a
transport resting after repeated failures drops events with a warning.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lakehouse.config import Config

log = logging.getLogger(__name__)

Build = Callable[[], Any]
"""Returns the event to send (built on the worker thread), or None to send nothing."""


def transports(config: Config) -> list[tuple[str, Any]]:
    """(label, openlineage transport) for each transport the config turns on."""
    from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport
    from openlineage.client.transport.file import FileConfig, FileTransport
    from openlineage.client.transport.http import (
        ApiKeyTokenProvider,
        HttpConfig,
        HttpTransport,
        TokenProvider,
    )

    lc = config.lineage
    out: list[tuple[str, Any]] = []
    if lc.file:
        path = config.lineage_file
        if "://" not in path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        out.append((f"file {path}", FileTransport(FileConfig(log_file_path=path, append=True))))
    if lc.http_url:
        auth = ApiKeyTokenProvider({"api_key": lc.http_api_key}) if lc.http_api_key \
            else TokenProvider({})
        out.append((f"http {lc.http_url}", HttpTransport(HttpConfig(
            url=lc.http_url, endpoint=lc.http_endpoint, timeout=lc.http_timeout_seconds,
            auth=auth, retry={"total": 2, "read": 2, "connect": 2, "backoff_factor": 0.3,
                              "status_forcelist": [500, 502, 503, 504],
                              "allowed_methods": ["HEAD", "POST"]}))))
    if lc.console:
        out.append(("console", ConsoleTransport(ConsoleConfig())))
    return out


class Sink:
    """One transport with its own queue and thread, so a slow or dead lineage server
    never holds up the file. After ``trip`` failures in a row it rests for ``rest``
    seconds, dropping (and counting) events instead of waiting on every one."""

    def __init__(self, label: str, transport: Any, capacity: int = 10_000, trip: int = 3,
                 rest: float = 30.0) -> None:
        self.label = label
        self.transport = transport
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._trip, self._rest = trip, rest
        self._failures_in_row = 0
        self._resting_until = 0.0
        self._queue: queue.Queue[Any] = queue.Queue(capacity)
        self._thread = threading.Thread(target=self._work, name=f"lineage-{label}", daemon=True)
        self._thread.start()

    def put(self, event: Any) -> None:
        """Queue an event for this transport."""
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float) -> None:
        """Send what is queued within ``timeout`` seconds."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("lineage: %s: %d events not sent within %.0fs", self.label,
                        self._queue.qsize(), timeout)
        if self.failed or self.dropped:
            log.warning("lineage: %s: %d events sent, %d failed, %d dropped", self.label,
                        self.sent, self.failed, self.dropped)

    def _work(self) -> None:
        while (event := self._queue.get()) is not None:
            if time.monotonic() < self._resting_until:
                self.dropped += 1
                continue
            try:
                self.transport.emit(event)
            except Exception as exc:
                self.failed += 1
                self._failures_in_row += 1
                log.warning("lineage: sending to %s failed (the pipeline goes on): %s",
                            self.label, exc)
                if self._failures_in_row >= self._trip:
                    self._resting_until = time.monotonic() + self._rest
                    self._failures_in_row = 0
                    log.warning("lineage: %s failed %d times in a row; dropping its events "
                                "for %.0fs", self.label, self._trip, self._rest)
            else:
                self.sent += 1
                self._failures_in_row = 0


class Emitter:
    """Builds events on one background thread, in submission order, and hands each to
    every sink."""

    def __init__(self, sinks: list[tuple[str, Any]], capacity: int = 10_000) -> None:
        self.sinks = [Sink(label, transport, capacity) for label, transport in sinks]
        self.built = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[Build | None] = queue.Queue(capacity)
        self._thread: threading.Thread | None = None
        if self.sinks:
            self._thread = threading.Thread(target=self._work, name="lineage-builder",
                                            daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        """False when no transport is configured (or lineage is switched off)."""
        return bool(self.sinks)

    def submit(self, build: Build) -> None:
        """Queue an event; returns at once."""
        if not self.sinks:
            return
        try:
            self._queue.put_nowait(build)
        except queue.Full:
            self.dropped += 1
            log.warning("lineage: event queue full (%d); dropping an event",
                        self._queue.maxsize)

    def close(self, timeout: float = 30.0) -> None:
        """Build and send what is queued (at most ``timeout`` seconds per stage), then stop."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("lineage: %d events still to build after %.0fs; not waiting longer",
                        self._queue.qsize(), timeout)
        self._thread = None
        for sink in self.sinks:
            sink.close(timeout)

    def _work(self) -> None:
        while (build := self._queue.get()) is not None:
            try:
                event = build()
            except Exception as exc:
                self.failed += 1
                log.warning("lineage: could not build an event: %s", exc, exc_info=True)
                continue
            if event is not None:
                self.built += 1
                for sink in self.sinks:
                    sink.put(event)
