"""Active users per minute and sessions per day, exact (two-stage aggregates).

Both keep an exact, mergeable state (one row per (minute, user) and per session) and roll
it up per output group, so distinct users and median session lengths stay exact however
late an event arrives.
"""

from pyspark.sql import functions as F

from lakehouse.aggregates import Aggregate, Count, Max, Min, Rollup, tumbling
from lakehouse.registry import gold_table


@gold_table(silver="clickstream")
def active_users_1m() -> Aggregate:
    """Distinct users and events per 1-minute event-time window."""
    start, end = tumbling("event_time", 60)
    return Aggregate(
        by={"window_start": start, "window_end": end, "user_id": F.col("user_id")},
        measures={"events": Count()},
        rollup=Rollup(by={"window_start": F.col("window_start"), "window_end": F.col("window_end")},
                      aggregates={"active_users": F.count(F.lit(1)), "events": F.sum("events")}),
    )


@gold_table(silver="clickstream")
def sessions_daily() -> Aggregate:
    """Sessions per day (UTC date of the session's first event), with the median session
    length and events per session."""
    seconds = (F.unix_micros("last_event") - F.unix_micros("first_event")) / 1_000_000
    return Aggregate(
        by={"session_id": F.col("session_id")},
        measures={"first_event": Min("event_time"), "last_event": Max("event_time"),
                  "events": Count()},
        rollup=Rollup(
            by={"session_date": F.to_date("first_event")},
            aggregates={"sessions": F.count(F.lit(1)),
                        "median_session_seconds": F.median(seconds),
                        "events": F.sum("events")},
            derived={"events_per_session": F.round(F.col("events") / F.col("sessions"), 2)}),
    )
