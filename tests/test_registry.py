"""Table definitions: the decorators, discovery, and the default tables of a source."""

from __future__ import annotations

from lakehouse.registry import (
    bronze_table,
    default_bronze,
    default_silver,
    discover_bronze,
    discover_silver,
)


def test_a_source_needs_no_bronze_or_silver_file_of_its_own() -> None:
    """The project's sources land and parse by default: no definitions in the folders."""
    assert discover_bronze() == [] and discover_silver() == []
    bronze = default_bronze("payments")
    assert (bronze.name, bronze.source, bronze.partition_by) == (
        "payments", "payments", ("ingest_date",))
    assert bronze.qualified_name == "bronze.payments"
    silver = default_silver(bronze)
    assert (silver.name, silver.bronze, silver.contract) == ("payments", "payments", "payments")
    assert silver.transform("rows") == "rows"  # type: ignore[arg-type]


def test_decorator_has_no_side_effects() -> None:
    @bronze_table(source="elsewhere", name="custom")
    def fn(df):  # type: ignore[no-untyped-def]
        return df

    assert fn("x") == "x"
    spec = fn.__lakehouse_table__  # type: ignore[attr-defined]
    assert (spec.name, spec.source) == ("custom", "elsewhere")
    assert "custom" not in {t.name for t in discover_bronze()}
