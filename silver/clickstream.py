"""silver.clickstream: each valid clickstream event once, typed by its contract."""

from pyspark.sql import DataFrame

from lakehouse.registry import silver_table


@silver_table(bronze="clickstream", contract="clickstream")
def clickstream(events: DataFrame) -> DataFrame:
    """Page views, clicks, searches and checkouts that passed the contract, once per event_id."""
    return events
