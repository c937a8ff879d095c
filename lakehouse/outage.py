"""What a running job does when Kafka stops answering.

The queries that read Kafka (bronze, or a source's chained query) keep their place in
their checkpoints; the queries downstream read Delta and go on. While the broker does not
answer, the job says so, then again every ``REPORT_EVERY`` seconds. A Kafka query that
fails meanwhile is restarted from its checkpoint once the broker answers again, retrying
with backoff (1 s, doubling, at most 30 s). A broker away longer than
``kafka.unavailable_timeout_seconds`` stops the job with LH-KAFKA-004 (exit code 75, "try
again later"). Nothing is lost either way: bronze commits only what it read, and the
checkpoint says where to go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import Retrying, retry_if_result, sleep_using_event, wait_exponential

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.kafka_admin import answers
from lakehouse.printing import Printer

Q = TypeVar("Q")

REPORT_EVERY = 30.0
"""Seconds between 'still not answering' lines."""
CHECK_EVERY = 5.0
"""Seconds between looks at the broker while everything runs."""
MAX_BACKOFF = 30.0


@dataclass
class Outage:
    """The broker's state as a running job sees it: since when it has not answered."""

    bootstrap: str
    properties: Mapping[str, str]
    timeout: float
    printer: Printer
    clock: Callable[[], float] = time.monotonic
    probe: Callable[[], bool] | None = None
    """Whether the broker answers now (default: a metadata request)."""
    since: float | None = None
    """When the broker was first seen not answering (None while it answers)."""
    last_down: float | None = None
    """When it was last seen not answering: a Kafka query failing within the timeout of
    that is a casualty of the outage, and is restarted."""
    _checked: float = field(default=float("-inf"))
    _reported: float = 0.0

    def answering(self) -> bool:
        """Ask the broker now."""
        if self.probe is not None:
            return self.probe()
        return answers(self.bootstrap, self.properties, timeout=2.0)

    def check(self) -> None:
        """Look at the broker (at most every ``CHECK_EVERY`` seconds), report a change,
        and raise LH-KAFKA-004 once it has been away longer than the timeout."""
        now = self.clock()
        if now - self._checked >= CHECK_EVERY:
            self._checked = now
            self.observe(self.answering(), now)

    def observe(self, up: bool, now: float) -> None:
        """Record one look at the broker."""
        if up:
            if self.since is not None:
                self.printer(f"Kafka at {self.bootstrap} answers again after "
                             f"{now - self.since:.0f}s")
            self.since = None
            return
        self.last_down = now
        if self.since is None:
            self.since = self._reported = now
            self.printer(f"Kafka at {self.bootstrap} is not answering; waiting for it (the "
                         f"job stops after {self.timeout:.0f}s without it)")
        elif now - self._reported >= REPORT_EVERY:
            self._reported = now
            self.printer(f"Kafka at {self.bootstrap} still not answering after "
                         f"{now - self.since:.0f}s")
        if now - self.since > self.timeout:
            raise self.lost(now)

    def lost(self, now: float) -> LakehouseError:
        """The error that stops the job."""
        gone = now - (self.since if self.since is not None else now)
        return LakehouseError(
            ErrorCode.BROKER_LOST,
            f"Kafka at {self.bootstrap} has not answered for {gone:.0f}s "
            f"(kafka.unavailable_timeout_seconds: {self.timeout:g})",
            hint="every committed batch is in the tables; start the job again once the "
                 "broker is back (`lakehouse broker status`), it resumes from its checkpoints",
            bootstrap=self.bootstrap, seconds=round(gone))

    def caused(self, up: bool, now: float) -> bool:
        """Whether a Kafka query that failed now is a casualty of an outage."""
        return not up or (self.last_down is not None and now - self.last_down <= self.timeout)

    def restart(self, name: str, start: Callable[[], Q], reason: str,
                stop: threading.Event) -> Q | None:
        """Start a failed Kafka query again once the broker answers, looking again after
        1 s, doubling to ``MAX_BACKOFF`` (tenacity); None if ``stop`` is set. Raises
        LH-KAFKA-004 past the timeout."""
        self.printer(f"query {name} failed while Kafka was away ({reason}); it restarts "
                     "from its checkpoint once the broker answers")

        def look() -> bool | None:
            """Whether the broker answers now; None once ``stop`` is set."""
            if stop.is_set():
                return None
            up = self.answering()
            self.observe(up, self.clock())
            return up

        answered = Retrying(
            retry=retry_if_result(lambda up: up is False),
            wait=wait_exponential(max=MAX_BACKOFF), sleep=sleep_using_event(stop),
            before_sleep=lambda rs: self.printer(f"  retrying in {rs.upcoming_sleep:.0f}s"),
        )(look)
        if not answered:
            return None
        query = start()
        self.printer(f"restarted {name}")
        return query
