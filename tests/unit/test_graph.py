"""The pipeline graph built from the project's own definitions and a config (no Spark)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse import graph
from lakehouse.config import parse_config
from lakehouse.errors import ErrorCode, LakehouseError


def config(tmp_path: Path, **sources: dict) -> graph.Graph:
    return graph.build(parse_config({
        "project": "p", "kafka": {"bootstrap_servers": "h:1"},
        "warehouse": {"root": str(tmp_path)},
        "sources": sources or {"orders": {"topic": "shop.orders.v1"},
                               "clickstream": {"topic": "web.clickstream.v1"}}}))


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


def test_a_config_may_name_only_the_sources_it_runs(tmp_path: Path) -> None:
    g = config(tmp_path, orders={"topic": "shop.orders.v1"})  # no clickstream source
    assert g.node("bronze.clickstream").inputs == ("source:clickstream",)


def test_a_definition_reading_an_undefined_table_fails_before_anything_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace
    typo = [replace(g, silver="ordres") for g in graph.discover_gold()[:1]]
    monkeypatch.setattr(graph, "discover_gold", lambda: typo)
    with pytest.raises(LakehouseError) as err:
        config(tmp_path)
    assert err.value.code is ErrorCode.BAD_DEFINITION
    assert "reads silver.ordres, which is not defined" in str(err.value)
