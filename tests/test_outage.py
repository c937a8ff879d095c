"""How a running job judges a broker outage, on a fake clock and a fake broker."""

from __future__ import annotations

import threading

import pytest

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.outage import Outage


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def outage(up: list[bool], clock: Clock, lines: list[str], timeout: float = 60) -> Outage:
    """An Outage whose broker answers as ``up`` says, one entry per look."""
    return Outage("b:9092", {}, timeout, lines.append, clock, probe=lambda: up.pop(0))


def test_an_outage_is_reported_once_then_its_end() -> None:
    clock, lines = Clock(), []
    watch = outage([], clock, lines)
    for t, up in [(0, True), (5, False), (10, False), (15, False), (20, True)]:
        clock.now = t
        watch.observe(up, t)
    assert len(lines) == 2
    assert "not answering" in lines[0] and "60s" in lines[0]
    assert "answers again after 15s" in lines[1]
    assert watch.since is None and watch.last_down == 15


def test_a_broker_away_longer_than_the_timeout_stops_the_job() -> None:
    clock, lines = Clock(), []
    watch = outage([], clock, lines, timeout=60)
    watch.observe(False, 0)
    watch.observe(False, 60)
    with pytest.raises(LakehouseError) as err:
        watch.observe(False, 61)
    assert err.value.code is ErrorCode.BROKER_LOST and err.value.exit_code == 75
    assert "61s" in err.value.message and "resumes from its checkpoints" in err.value.hint


def test_a_kafka_query_failing_during_or_soon_after_an_outage_is_its_casualty() -> None:
    clock, lines = Clock(), []
    watch = outage([], clock, lines, timeout=60)
    assert not watch.caused(True, 0)  # broker fine, never lost: a real failure
    assert watch.caused(False, 0)
    watch.observe(False, 10)
    watch.observe(True, 20)
    assert watch.caused(True, 70) and not watch.caused(True, 71)


def test_a_failed_query_restarts_once_the_broker_answers_with_backoff() -> None:
    clock, lines = Clock(), []
    watch = outage([False, False, False, True], clock, lines)
    waits: list[float] = []

    class Stop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0)
            clock.now += timeout or 0
            return False

    started = watch.restart("bronze.orders", lambda: "query", "timed out", Stop())
    assert started == "query"
    assert waits == [1, 2, 4]
    assert lines[-1] == "restarted bronze.orders" and "answers again after 7s" in lines[-2]


def test_a_stop_while_waiting_ends_the_wait_without_a_restart() -> None:
    clock, lines = Clock(), []
    watch = outage([False], clock, lines)
    stop = threading.Event()
    stop.set()
    assert watch.restart("bronze.orders", lambda: "query", "timed out", stop) is None
