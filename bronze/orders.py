"""bronze.orders: order events from ``shop.orders.v1`` exactly as they arrived."""

from pyspark.sql import DataFrame

from bronze.landing import land
from lakehouse.registry import bronze_table


@bronze_table(source="orders")
def orders(raw: DataFrame) -> DataFrame:
    """Order lifecycle events (placed, paid, shipped, cancelled, refunded), raw JSON."""
    return land(raw)
