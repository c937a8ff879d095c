"""Discovery of table definitions in the medallion folders."""

from __future__ import annotations

from lakehouse.registry import bronze_table, discover_bronze


def test_project_bronze_tables_discovered() -> None:
    tables = {t.name: t for t in discover_bronze()}
    assert set(tables) >= {"orders", "clickstream"}
    assert tables["orders"].source == "orders"
    assert tables["orders"].partition_by == ("ingest_date",)
    assert tables["orders"].qualified_name == "bronze.orders"


def test_decorator_has_no_side_effects() -> None:
    @bronze_table(source="elsewhere", name="custom")
    def fn(df):  # type: ignore[no-untyped-def]
        return df

    assert fn("x") == "x"
    spec = fn.__lakehouse_table__  # type: ignore[attr-defined]
    assert (spec.name, spec.source) == ("custom", "elsewhere")
    assert "custom" not in {t.name for t in discover_bronze()}
