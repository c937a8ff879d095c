"""What tables the warehouse holds (``layer.name`` -> Delta table), how SQL names them,
and how to read them from pandas and Spark.

The one module the readers share for naming and finding tables: ``lakehouse.query``
(DuckDB), ``lakehouse.audit.timetravel`` and ``lakehouse.audit.explain`` import it, and it
imports none of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakehouse.config import Config, load_config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta import read_table
from lakehouse.io.delta_log import open_table
from lakehouse.io.storage import is_dir, join, sub_dirs

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

LAYERS = ("bronze", "silver", "gold")
SCHEMAS = (*LAYERS, "_system")
"""Where tables live: the layers, and ``_system`` (the event log, the erasure audit)."""
_REF = re.compile(r"('(?:[^']|'')*')|"  # a string literal, left alone
                  r'(?<![\w.])("?)(' + "|".join(SCHEMAS) + r')\2\s*\.\s*("?)([A-Za-z_]\w*)\4',
                  re.IGNORECASE)


@dataclass(frozen=True)
class TableStats:
    """Row count and current version of one table."""

    name: str
    uri: str
    rows: int
    version: int


def table_names(config: Config) -> list[str]:
    """``layer.name`` of every Delta table under the warehouse root (a path or a URI)."""
    names = []
    for layer in SCHEMAS:
        base = join(config.warehouse.root, layer)
        names += [f"{layer}.{d}" for d in sub_dirs(base) if is_dir(join(base, d, "_delta_log"))]
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
    if layer not in SCHEMAS or not table:
        raise LakehouseError(ErrorCode.QUERY_UNKNOWN_TABLE,
                             f"{name!r} is not a table name",
                             hint=f"name tables as layer.table, layer one of {', '.join(SCHEMAS)}")
    return layer, table


def table_uri(config: Config, name: str) -> str:
    """Where the table ``layer.table`` lives."""
    return config.warehouse.table_uri(*split_name(name))


def referenced_tables(sql: str) -> list[str]:
    """``layer.name`` of every warehouse table the SQL names, in order, once each (pure)."""
    seen: dict[str, None] = {}
    replace_tables(sql, lambda name: seen.setdefault(name) or name)
    return list(seen)


def replace_tables(sql: str, rename: Callable[[str], str]) -> str:
    """The SQL with every ``layer.name`` reference replaced by ``rename(name)``; string
    literals are left alone (pure)."""
    return _REF.sub(lambda m: m.group(1) or rename(f"{m.group(3).lower()}.{m.group(5)}"), sql)


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
    require_tables(config, [name])
    dt = open_table(table_uri(config, name), config.warehouse.storage_options, version=version)
    assert dt is not None
    return dt.to_pandas(columns=columns)


def view_name(name: str) -> str:
    """The Spark temporary view of a table: ``gold.sales`` -> ``gold_sales`` (Spark's
    temporary views take one-part names)."""
    return name.replace(".", "_")


def register_views(spark: SparkSession, config: Config | None = None,
                   names: list[str] | None = None) -> list[str]:
    """Register tables (default: all) as temporary views of ``spark``, read by delta-spark
    (the session needs Delta on it: ``lakehouse.spark.build_session``); returns the view
    names (``gold_revenue_by_category_5m``, ...)."""
    config = config or load_config()
    views = []
    for name in names or table_names(config):
        read_table(spark, table_uri(config, name)) \
            .createOrReplaceTempView(view_name(name))
        views.append(view_name(name))
    return views


def spark_sql(spark: SparkSession, sql: str, config: Config | None = None) -> DataFrame:
    """Run SQL naming tables as ``gold.revenue_by_category_5m`` (as ``lakehouse query``
    does) on Spark: the tables it names are registered as views first."""
    config = config or load_config()
    names = referenced_tables(sql)
    require_tables(config, names)
    register_views(spark, config, names)
    return spark.sql(replace_tables(sql, view_name))
