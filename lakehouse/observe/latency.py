"""Event -> commit latency from Kafka timestamps, computed in the aggregation a writer
already runs over its batch (no extra pass over the data): the percentiles of the records'
Kafka timestamps, turned into latencies once the batch has committed."""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F

from lakehouse.batch import EventTimes

_QUANTILES = [0.01, 0.05, 0.5]
_PREFIX = "_event_ms"


def event_time_aggregates(column: str) -> list[Column]:
    """Aggregate expressions over the timestamp ``column``, for the writer's own ``agg``."""
    ms = F.unix_millis(F.col(column))
    return [F.percentile_approx(ms, _QUANTILES, 1000).alias(f"{_PREFIX}_q"),
            F.min(ms).alias(f"{_PREFIX}_min"), F.max(ms).alias(f"{_PREFIX}_max")]


def event_times(totals: Any) -> EventTimes | None:
    """The batch's event times from the row ``event_time_aggregates`` filled; None for a
    batch without timestamps."""
    quantiles = totals[f"{_PREFIX}_q"]
    if not quantiles or totals[f"{_PREFIX}_min"] is None:
        return None
    p01, p05, p50 = (float(q) for q in quantiles)
    return EventTimes(float(totals[f"{_PREFIX}_min"]), p01, p05, p50,
                      float(totals[f"{_PREFIX}_max"]))
