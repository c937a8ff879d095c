"""Revenue of order events per 5-minute window and category, and per day and country.

Amounts are summed as sent, in the order's currency (there is no FX conversion).
"""

from pyspark.sql import Column
from pyspark.sql import functions as F

from lakehouse.aggregates import Aggregate, Count, Sum, tumbling
from lakehouse.registry import gold_table


def _revenue(by: dict[str, Column]) -> Aggregate:
    placed = F.col("event_type") == "order_placed"
    refunded = F.col("event_type") == "order_refunded"
    return Aggregate(
        by=by,
        where=placed | refunded,
        measures={"orders": Count(where=placed),
                  "revenue": Sum("amount", where=placed),
                  "refunds": Sum("amount", where=refunded)},
        derived={"net_revenue": F.col("revenue") - F.col("refunds"),
                 "avg_order_value": F.when(F.col("orders") > 0, F.round(
                     F.col("revenue") / F.col("orders"), 2)).cast("decimal(22,2)")},
    )


@gold_table(silver="orders")
def revenue_by_category_5m() -> Aggregate:
    """Orders, revenue, refunds and net revenue per category in 5-minute event-time windows."""
    start, end = tumbling("event_time", 300)
    return _revenue({"window_start": start, "window_end": end, "category": F.col("category")})


@gold_table(silver="orders")
def revenue_by_country_daily() -> Aggregate:
    """Orders, revenue, refunds and net revenue per event date (UTC) and country."""
    return _revenue({"event_date": F.col("event_date"), "country": F.col("country")})
