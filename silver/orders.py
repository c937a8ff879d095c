"""silver.orders: each valid order event once, typed by the orders contract."""

from pyspark.sql import DataFrame

from lakehouse.registry import silver_table


@silver_table(bronze="orders", contract="orders")
def orders(events: DataFrame) -> DataFrame:
    """Order lifecycle events that passed the orders contract and suite, once per event_id."""
    return events
