"""Streaming lakehouse engine: config, Spark session, Kafka source, Delta I/O, broker and CLI.

The medallion folders (`bronze/`, `silver/`, `gold/`) hold this project's table
definitions as pure DataFrame transformations; this package discovers and runs them.
"""

from lakehouse.errors import ErrorCode, LakehouseError

__all__ = ["ErrorCode", "LakehouseError"]
__version__ = "0.1.0"
