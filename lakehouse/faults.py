"""Deliberate hard crashes at named points, for the exactly-once tests.

``LAKEHOUSE_CRASH_AT=<query>:<point>:<batch id>`` (e.g.
``bronze.orders:after_delta_commit:1``) makes the process SIGKILL itself, and its whole
process group when it leads one (the Spark JVM included), when that query reaches that
point in that micro-batch. Points: ``before_delta_commit``, ``after_delta_commit``;
silver also ``after_quarantine_commit``, two-stage gold ``after_output_commit``; a silver
replay (query ``silver.<t>:replay``) ``after_delta_commit``.
Unset in normal operation; costs one dictionary lookup per batch.
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "LAKEHOUSE_CRASH_AT"


def crash_point(query: str, point: str, batch_id: int) -> None:
    """Die here, now, without cleanup, if the environment asks for it."""
    wanted = os.environ.get(ENV)
    if not wanted or wanted != f"{query}:{point}:{batch_id}":
        return
    sys.stderr.write(f"lakehouse: crashing on purpose at {wanted}\n")
    sys.stderr.flush()
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
