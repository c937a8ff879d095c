"""Sends OpenLineage events through the configured transports, off the batch's path.

Events are built and sent by one background thread, in the order they were submitted:
reading a table's schema or a commit's size for an event never slows a micro-batch,
and a lineage server that is down delays nothing. Every failure is logged and counted,
never raised into the pipeline; a full queue drops the event with a warning.
"""

from __future__ import annotations

import logging
import queue
import threading
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


class Emitter:
    """A queue of events and the thread that sends them."""

    def __init__(self, sinks: list[tuple[str, Any]], capacity: int = 10_000) -> None:
        self.sinks = sinks
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[Build | None] = queue.Queue(capacity)
        self._thread: threading.Thread | None = None
        if sinks:
            self._thread = threading.Thread(target=self._work, name="lineage-emitter",
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
        """Send what is queued (waiting at most ``timeout`` seconds), then stop."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("lineage: %d events still queued after %.0fs; not waiting longer",
                        self._queue.qsize(), timeout)
        self._thread = None

    def _work(self) -> None:
        while True:
            build = self._queue.get()
            if build is None:
                return
            try:
                event = build()
            except Exception as exc:
                self.failed += 1
                log.warning("lineage: could not build an event: %s", exc, exc_info=True)
                continue
            if event is not None:
                self._send(event)

    def _send(self, event: Any) -> None:
        ok = True
        for label, transport in self.sinks:
            try:
                transport.emit(event)
            except Exception as exc:
                ok = False
                log.warning("lineage: sending to %s failed (the pipeline goes on): %s",
                            label, exc)
        if ok:
            self.sent += 1
        else:
            self.failed += 1
