"""What tables the warehouse holds (``layer.name`` -> Delta table), and how to read them
from pandas and Spark."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakehouse.config import Config, load_config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta import open_table

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

LAYERS = ("bronze", "silver", "gold")


@dataclass(frozen=True)
class TableStats:
    """Row count and current version of one table."""

    name: str
    uri: str
    rows: int
    version: int


def table_names(config: Config) -> list[str]:
    """``layer.name`` of every Delta table under the warehouse root (local warehouses)."""
    from pathlib import Path
    root = Path(config.warehouse.root)
    names = []
    for layer in LAYERS:
        base = root / layer
        if base.is_dir():
            names += [f"{layer}.{d.name}" for d in sorted(base.iterdir())
                      if (d / "_delta_log").is_dir()]
    return names


def table_stats(config: Config) -> list[TableStats]:
    """Stats of every table, counting rows from the Delta log's file statistics."""
    out = []
    for name in table_names(config):
        layer, table = name.split(".", 1)
        uri = config.warehouse.table_uri(layer, table)
        dt = open_table(uri, config.warehouse.storage_options)
        if dt is None:
            continue
        out.append(TableStats(name, uri, int(dt.count()), dt.version()))
    return out


def split_name(name: str) -> tuple[str, str]:
    """``layer.table`` -> (layer, table), or an error naming the layers."""
    layer, _, table = name.partition(".")
    if layer not in LAYERS or not table:
        raise LakehouseError(ErrorCode.QUERY_UNKNOWN_TABLE,
                             f"{name!r} is not a table name",
                             hint=f"name tables as layer.table, layer one of {', '.join(LAYERS)}")
    return layer, table


def require_tables(config: Config, names: list[str]) -> list[str]:
    """Check every named table exists; an error listing the tables if one does not.
    Returns the warehouse's tables."""
    available = table_names(config)
    for name in names:
        if name not in available:
            raise LakehouseError(
                ErrorCode.QUERY_UNKNOWN_TABLE,
                f"no table {name} in the warehouse {config.warehouse.root}",
                hint=f"tables: {', '.join(available) or 'none yet (run the demo)'}", table=name)
    return available


def read_pandas(name: str, config: Config | None = None, columns: list[str] | None = None,
                version: int | None = None) -> pd.DataFrame:
    """One table (as of ``version``) as a pandas DataFrame, e.g.
    ``read_pandas("gold.revenue_by_category_5m")``. Config defaults as in the CLI."""
    config = config or load_config()
    layer, table = split_name(name)
    require_tables(config, [name])
    dt = open_table(config.warehouse.table_uri(layer, table), config.warehouse.storage_options,
                    version=version)
    assert dt is not None
    return dt.to_pandas(columns=columns)


def view_name(name: str) -> str:
    """The Spark temporary view of a table: ``gold.sales`` -> ``gold_sales`` (Spark's
    temporary views take one-part names)."""
    return name.replace(".", "_")


def register_views(spark: SparkSession, config: Config | None = None,
                   names: list[str] | None = None) -> list[str]:
    """Register tables (default: all) as temporary views of ``spark``, read through the
    ``delta-py`` source; returns the view names (``gold_revenue_by_category_5m``, ...)."""
    from lakehouse.io.delta_source import FORMAT_NAME, VERSION_COLUMN
    from lakehouse.spark import register_sources
    config = config or load_config()
    register_sources(spark)
    views = []
    for name in names or table_names(config):
        layer, table = split_name(name)
        (spark.read.format(FORMAT_NAME).option("path", config.warehouse.table_uri(layer, table))
         .load().drop(VERSION_COLUMN).createOrReplaceTempView(view_name(name)))
        views.append(view_name(name))
    return views


def spark_sql(spark: SparkSession, sql: str, config: Config | None = None) -> DataFrame:
    """Run SQL naming tables as ``gold.revenue_by_category_5m`` (as ``lakehouse query``
    does) on Spark: the tables it names are registered as views first."""
    from lakehouse.query import referenced_tables, replace_tables
    config = config or load_config()
    names = referenced_tables(sql)
    require_tables(config, names)
    register_views(spark, config, names)
    return spark.sql(replace_tables(sql, view_name))
