"""Where a typical micro-batch's wall time goes, per pipeline, from the event log's rows.

Each row's ``duration_ms`` holds the writer's steps (``lakehouse.steps``: every
Delta write named after its table, the routing and aggregation jobs, and in the chained
shape each stage run inside the bronze batch) beside Spark's own phases of the
streaming query (``latestOffset``, ``queryPlanning``, ``walCommit``, ``commitOffsets``).
What the steps do not cover is the writer's own driver work (``other``). Idle time is
the gap between one trigger's end and the next one's start. The openlineage-spark
listener works on Spark's listener bus, off the batch's thread but on the same cores;
its cost is measured by running the same load once more with it taken off the bus
(``without_listener``): Spark's listener-bus timers sample, and the listener's file
listings run as Spark jobs whose time is not its thread's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import pairwise
from typing import Any

from pyspark.sql import SparkSession

from lakehouse.lineage.listener import LISTENER
from lakehouse.steps import PREFIX

SPARK_PHASES = ("latestOffset", "getBatch", "queryPlanning", "walCommit", "commitOffsets")
"""Spark's phases of a streaming trigger shown in the breakdown (``addBatch`` is the
writer's work, broken down by its steps)."""


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def idle_ms(rows: Sequence[Mapping[str, Any]]) -> list[float]:
    """Per trigger of one query, the milliseconds from its end to the next trigger's
    start (pure; rows with Spark's trigger time and ``triggerExecution``)."""
    timed = sorted((r["trigger_time"], (r.get("duration_ms") or {}).get("triggerExecution"))
                   for r in rows if r.get("trigger_time") is not None)
    out = []
    for (start, took), (following, _) in pairwise(timed):
        if took is None or not isinstance(start, datetime):
            continue
        out.append(max(0.0, (following - start).total_seconds() * 1000 - took))
    return out


def breakdown(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per pipeline: its batches, mean records, and mean milliseconds per batch of each
    step, Spark phase, the rest of the writer's time (``other``) and idle time (pure)."""
    out = []
    for pipeline in sorted({r["pipeline"] for r in rows}):
        mine = [r for r in rows if r["pipeline"] == pipeline and not r.get("error")
                and (r.get("input_rows") or 0) > 0]
        if not mine:
            continue
        durations = [r.get("duration_ms") or {} for r in mine]
        names = sorted({k for d in durations for k in d if k.startswith(PREFIX)},
                       key=lambda k: -_mean([d.get(k, 0) for d in durations]))
        steps = {k.removeprefix(PREFIX): _mean([d.get(k, 0) for d in durations]) for k in names}
        batch = _mean([d.get("batch", 0) for d in durations])
        phases = {p: _mean([d[p] for d in durations if p in d]) for p in SPARK_PHASES
                  if any(p in d for d in durations)}
        idle = idle_ms(mine)
        out.append({"pipeline": pipeline, "batches": len(mine),
                    "records": _mean([float(r.get("input_rows") or 0) for r in mine]),
                    "batch_ms": batch, "steps": steps,
                    "other_ms": max(0.0, batch - sum(steps.values())),
                    "spark_ms": phases, "idle_ms": _mean(idle) if idle else None})
    return out


@contextmanager
def without_listener(spark: SparkSession) -> Iterator[bool]:
    """The openlineage-spark listener taken off the session's listener bus while the block
    runs (and put back after), for an A/B of its cost in one run; yields whether it was
    there."""
    context = spark.sparkContext._jsc.sc()  # type: ignore[union-attr]
    found = [x for x in context.listenerBus().listeners()
             if x.getClass().getName() == LISTENER]
    for listener in found:
        context.removeSparkListener(listener)
    try:
        yield bool(found)
    finally:
        for listener in found:
            context.addSparkListener(listener)
