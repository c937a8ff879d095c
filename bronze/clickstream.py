"""bronze.clickstream: web events from ``web.clickstream.v1`` exactly as they arrived."""

from pyspark.sql import DataFrame

from bronze.landing import land
from lakehouse.registry import bronze_table


@bronze_table(source="clickstream")
def clickstream(raw: DataFrame) -> DataFrame:
    """Page views, clicks and cart events from the web shop, raw JSON."""
    return land(raw)
