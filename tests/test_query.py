"""Pure parts of ``lakehouse query``: table references, cells, the aligned table, JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.query import aligned, cell, display_width, referenced_tables, to_json, write_result


def test_referenced_tables_finds_layer_qualified_names_once() -> None:
    sql = ('SELECT * FROM gold.revenue_by_category_5m g JOIN "silver"."orders" s ON 1=1 '
           "JOIN GOLD.revenue_by_category_5m x ON 1=1, silver . orders_quarantine "
           "WHERE g.category <> 'gold.in_a_string' AND g.category <> 'it''s silver.x'")
    assert referenced_tables(sql) == ["gold.revenue_by_category_5m", "silver.orders",
                                      "silver.orders_quarantine"]
    assert referenced_tables("SELECT g.category FROM t g") == []
    assert referenced_tables("SELECT 1 FROM my.gold.orders") == []


def test_cells_show_nulls_times_bytes_and_truncate_by_display_width() -> None:
    assert cell(None) == "NULL"
    assert cell(datetime(2026, 11, 20, 18, 0, tzinfo=UTC)) == "2026-11-20 18:00:00+00:00"
    assert cell(b"{\"a\":\n1}") == '{"a":\\n1}'
    assert cell(Decimal("12.50")) == "12.50"
    assert display_width("文具") == 4
    long = cell("文" * 40, width=10)
    assert display_width(long) <= 10 and long.endswith("…")


def test_aligned_right_aligns_numbers_and_counts_rows() -> None:
    table = pa.table({"category": ["books", "文具"], "revenue": pa.array(
        [Decimal("1234.50"), Decimal("7.00")], pa.decimal128(12, 2))})
    lines = aligned(table).splitlines()
    assert lines[0] == "category | revenue"
    assert lines[2] == "books    | 1234.50"
    assert lines[3] == "文具     |    7.00"
    assert lines[-1] == "2 rows"
    assert aligned(table, max_rows=1).splitlines()[-1].startswith("2 rows (showing the first 1")


def test_json_keeps_exact_decimals_and_readable_values() -> None:
    table = pa.table({
        "d": pa.array([Decimal("12.34"), Decimal("0.10")], pa.decimal128(38, 2)),
        "big": pa.array([Decimal("12345678901234567890.12"), None], pa.decimal128(38, 2)),
        "t": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC")),
        "b": pa.array([b"\xff\x00", "ü".encode()], pa.binary())})
    rows = json.loads(to_json(table))
    assert rows[0]["d"] == 12.34 and rows[1]["d"] == 0.1
    assert rows[0]["big"] == "12345678901234567890.12" and rows[1]["big"] is None
    assert rows[0]["t"] == "2026-01-01T00:00:00+00:00"
    assert rows[0]["b"] == "/wA=" and rows[1]["b"] == "ü"


def test_parquet_needs_an_output_file() -> None:
    with pytest.raises(LakehouseError) as err:
        write_result(pa.table({"a": [1]}), "parquet", None)
    assert err.value.code is ErrorCode.QUERY_BAD_OPTION
