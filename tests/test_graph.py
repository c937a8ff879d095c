"""The pipeline graph built from the project's own definitions and a config (no Spark)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lakehouse import graph
from lakehouse.config import parse_config
from lakehouse.errors import ErrorCode, LakehouseError

ROOT = Path(__file__).resolve().parents[1]


def config(tmp_path: Path, expectations: Path | None = None, **sources: dict) -> graph.Graph:
    return graph.build(parse_config({
        "project": "p", "kafka": {"bootstrap_servers": "h:1"},
        "warehouse": {"root": str(tmp_path)},
        "silver": {"expectations_dir": str(expectations or ROOT / "expectations")},
        "sources": sources}))


def test_every_table_knows_its_layer_inputs_keys_and_location(tmp_path: Path) -> None:
    g = config(tmp_path)
    assert [q.name for q in g.queries] == [
        "bronze.clickstream", "bronze.orders", "silver.clickstream", "silver.orders",
        "gold.active_users_1m", "gold.revenue_by_category_5m", "gold.revenue_by_country_daily",
        "gold.sessions_daily"]
    orders = g.node("silver.orders")
    assert orders.inputs == ("bronze.orders",) and orders.keys == ("event_id",)
    assert orders.uri == str(tmp_path / "silver" / "orders")
    assert g.node("silver.orders_quarantine").keys == graph.COORDINATES
    assert g.node("bronze.orders").inputs == ("source:orders",)
    assert g.query("silver.orders").checkpoint == str(tmp_path / "_checkpoints" / "silver.orders")
    shared = g.node("silver._batches")  # one ledger for every silver query
    assert shared.queries == ("silver.clickstream", "silver.orders")
    assert [q.name for q in g.downstream("silver.orders")] == [
        "gold.revenue_by_category_5m", "gold.revenue_by_country_daily"]
    assert g.bronze("silver.orders_quarantine").name == "bronze.orders"


def test_selection_by_qualified_or_bare_name(tmp_path: Path) -> None:
    g = config(tmp_path)
    assert [q.name for q in g.select(["orders"])] == ["bronze.orders", "silver.orders"]
    assert [q.name for q in g.select(["gold.sessions_daily", "bronze.orders"])] == [
        "bronze.orders", "gold.sessions_daily"]
    assert len(g.select(None)) == len(g.queries)
    with pytest.raises(LakehouseError) as err:
        g.select(["ordres"])
    assert err.value.code is ErrorCode.UNKNOWN_TABLE and "silver.orders" in err.value.hint
    with pytest.raises(LakehouseError) as err:
        g.node("silver.nope")
    assert err.value.code is ErrorCode.UNKNOWN_TABLE


def test_a_contract_alone_makes_a_source_with_its_bronze_and_silver_tables(
        tmp_path: Path) -> None:
    folder = tmp_path / "expectations"
    shutil.copytree(ROOT / "expectations", folder)
    (folder / "payments.contract.yaml").write_text(
        "name: payments\ntopic: shop.payments.v1\nkey: payment_id\nevent_time: paid_at\n"
        "fields:\n  payment_id: {type: string, required: true}\n"
        "  paid_at: {type: timestamp, required: true}\n")
    g = config(tmp_path / "wh", folder)
    assert g.node("bronze.payments").inputs == ("source:payments",)
    assert g.node("silver.payments").keys == ("payment_id",)
    assert g.node("silver.payments").inputs == ("bronze.payments",)
    assert g.query("silver.payments").definition.contract == "payments"
    assert not g.skipped


def test_tables_of_a_source_the_config_does_not_run_are_skipped_saying_why(
        tmp_path: Path) -> None:
    g = config(tmp_path, clickstream={"enabled": False})
    assert "bronze.clickstream" not in [q.name for q in g.queries]
    assert [s.name for s in g.skipped] == [
        "bronze.clickstream", "silver.clickstream", "gold.active_users_1m",
        "gold.sessions_daily"]
    (line,) = g.warnings()
    assert line.startswith("skipping bronze.clickstream, silver.clickstream, "
                           "gold.active_users_1m, gold.sessions_daily: source 'clickstream' "
                           "is disabled")
    assert [q.name for q in g.select(None)][:2] == ["bronze.orders", "silver.orders"]
    for name in ("silver.clickstream", "clickstream", "gold.sessions_daily"):
        with pytest.raises(LakehouseError) as err:
            g.select([name])
        assert err.value.code is ErrorCode.TABLE_NOT_RUN
        assert "sources.clickstream.enabled: true" in err.value.hint


def test_a_bronze_definition_whose_source_has_no_contract_is_skipped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.landing import land
    from lakehouse.registry import BronzeTable
    refunds = BronzeTable("refunds", "refunds", land, ("ingest_date",), "refunds")
    monkeypatch.setattr(graph, "discover_bronze", lambda: [refunds])
    g = config(tmp_path)
    assert [s.name for s in g.skipped] == ["bronze.refunds"]
    assert "no contract declares source 'refunds'" in g.skipped[0].reason
    assert "refunds.contract.yaml" in g.skipped[0].hint
    assert "bronze.orders" in [q.name for q in g.queries]  # the default for orders


def test_a_definition_reading_an_undefined_table_fails_before_anything_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace
    typo = [replace(g, silver="ordres") for g in graph.discover_gold()[:1]]
    monkeypatch.setattr(graph, "discover_gold", lambda: typo)
    with pytest.raises(LakehouseError) as err:
        config(tmp_path)
    assert err.value.code is ErrorCode.BAD_DEFINITION
    assert "reads silver.ordres, which is not defined" in str(err.value)
