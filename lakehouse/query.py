"""``lakehouse query``: SQL over the warehouse's Delta tables, with no JVM.

Tables are named as everywhere else (``gold.revenue_by_category_5m``,
``silver.orders_quarantine``, ...). DuckDB runs the query over the Arrow datasets
delta-rs gives for the table versions (column pruning and filter pushdown included),
so a query over gold answers in well under a second after Python starts. Only the
tables a query names are opened.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from base64 import b64encode
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from lakehouse.audit.timetravel import AsOf, open_as_of
from lakehouse.catalog import SCHEMAS, referenced_tables, require_tables
from lakehouse.catalog import replace_tables as replace_tables  # re-exported
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta_log import RsTable

FORMATS = ("table", "csv", "json", "parquet")


def run_query(config: Config, sql: str, as_of: AsOf | None = None) -> pa.Table:
    """Run one SQL statement over the warehouse; the result as an Arrow table. With
    ``as_of`` (a version or an instant) every table is read as it was then."""
    import duckdb
    wanted = referenced_tables(sql)
    available = require_tables(config, wanted)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")  # as the pipelines' Spark sessions
        for layer in SCHEMAS:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
        for name in wanted:
            layer, table = name.split(".", 1)
            dt = open_as_of(config, name, as_of)
            con.execute(f'CREATE VIEW {layer}."{table}" AS {scan_sql(con, dt, name)}')
        try:
            return con.sql(sql).to_arrow_table()
        except AttributeError:  # a statement without a result (e.g. SET)
            return pa.table({})
        except duckdb.Error as exc:
            message = str(exc).strip().splitlines()[0]
            raise LakehouseError(
                ErrorCode.QUERY_FAILED, f"the query failed: {message}",
                hint=f"tables: {', '.join(available) or 'none yet'}; the SQL dialect is "
                     "DuckDB's") from None
    finally:
        con.close()


def scan_sql(con: Any, dt: RsTable, name: str) -> str:
    """A SELECT over one Delta snapshot, in the table's column order.

    Local tables: DuckDB's own Parquet reader over the snapshot's files (row groups
    pruned by their statistics, partition values from the hive-style paths), timestamps
    cast to the table's types (Spark writes them as INT96, which DuckDB reads without a
    time zone). Others: the Arrow dataset delta-rs gives, registered with DuckDB.
    """
    schema = pa.schema(dt.schema().to_arrow())
    files = dt.file_uris()
    if files and all("://" not in f for f in files):
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        partitioned = "true" if dt.metadata().partition_columns else "false"
        columns = ", ".join(_column(f) for f in schema)
        return (f"SELECT {columns} FROM read_parquet([{listing}], "
                f"hive_partitioning={partitioned}, union_by_name=true)")
    columns = ", ".join(f'"{c}"' for c in schema.names)
    alias = "__" + name.replace(".", "__")
    con.register(alias, dt.to_pyarrow_dataset() if files else schema.empty_table())
    return f'SELECT {columns} FROM "{alias}"'


def _column(field: pa.Field) -> str:
    """One column of a Parquet scan, as the Delta schema types it (pure)."""
    name = '"' + field.name.replace('"', '""') + '"'
    if pa.types.is_timestamp(field.type):
        return f"CAST({name} AS {'TIMESTAMPTZ' if field.type.tz else 'TIMESTAMP'}) AS {name}"
    return name


# -- output (pure, except for the final write) ------------------------------------------

def cell(value: Any, width: int = 60) -> str:
    """A value as shown in the aligned table."""
    if value is None:
        text = "NULL"
    elif isinstance(value, datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, bytes):
        text = value.decode("utf-8", errors="replace")
    else:
        text = str(value)
    text = text.replace("\n", "\\n")
    if display_width(text) > width:
        while display_width(text) > width - 1:
            text = text[:-1]
        text += "…"
    return text


def display_width(text: str) -> int:
    """Terminal columns a string takes (wide CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def aligned(result: pa.Table, max_rows: int = 100) -> str:
    """The result as an aligned text table: numbers right-aligned, a row count below."""
    names = result.column_names
    rows = result.slice(0, max_rows).to_pylist()
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
               or pa.types.is_decimal(f.type) for f in result.schema]
    cells = [[cell(r[n]) for n in names] for r in rows]
    widths = [max([display_width(n), *(display_width(c[i]) for c in cells)])
              for i, n in enumerate(names)]

    def line(values: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(values):
            pad = " " * (widths[i] - display_width(v))
            out.append(pad + v if numeric[i] else v + pad)
        return " | ".join(out).rstrip()

    lines = [line(names), "-+-".join("-" * w for w in widths)]
    lines += [line(c) for c in cells]
    shown = f"{result.num_rows:,} row{'s' if result.num_rows != 1 else ''}"
    if result.num_rows > max_rows:
        shown += f" (showing the first {max_rows:,}; --format csv --output FILE for all)"
    return "\n".join([*lines, shown])


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def to_json(result: pa.Table) -> str:
    """The result as a JSON array of objects: exact decimals stay numbers when a float
    represents them exactly (else strings), times are ISO-8601, bytes UTF-8 or base64."""
    rows = [{k: _json_value(v) for k, v in r.items()} for r in result.to_pylist()]
    return json.dumps(rows, ensure_ascii=False, indent=1)


def write_result(result: pa.Table, fmt: str, output: str | None,
                 stdout: IO[str] | None = None) -> str | None:
    """Write the result in ``fmt`` to ``output`` (a file) or stdout; returns the file."""
    stdout = stdout or sys.stdout
    if fmt not in FORMATS:
        raise LakehouseError(ErrorCode.QUERY_BAD_OPTION,
                             f"unknown format {fmt!r}", hint=f"one of {', '.join(FORMATS)}")
    if fmt == "parquet" and not output:
        raise LakehouseError(ErrorCode.QUERY_BAD_OPTION, "--format parquet needs --output FILE")
    if fmt == "parquet":
        import pyarrow.parquet as pq
        pq.write_table(result, str(output))
        return output
    if fmt == "csv":
        import pyarrow.csv as pacsv
        sink = pa.BufferOutputStream()
        pacsv.write_csv(result, sink)
        text = sink.getvalue().to_pybytes().decode("utf-8")
    elif fmt == "json":
        text = to_json(result) + "\n"
    else:
        text = aligned(result) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
        return output
    stdout.write(text)
    return None
