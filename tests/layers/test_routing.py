"""Silver's pure decisions without Spark: critical rules, quarantine selection."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from lakehouse.audit.quarantine import Selection, rule_summary, select
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.layers.routing import SilverPlan, check_critical
from lakehouse.quality.contract import load_contract
from lakehouse.quality.in_force import RulesInForce
from lakehouse.quality.rules import load_suite, results
from lakehouse.registry import SilverTable
from tests.conftest import ROOT


def orders_plan(limit: float = 5.0) -> SilverPlan:
    contract = load_contract(ROOT / "expectations" / "orders.contract.yaml")
    suite = load_suite(ROOT / "expectations" / "orders.suite.json",
                       tuple(f.name for f in contract.fields))
    table = SilverTable("orders", "orders", "orders", lambda df: df, "")
    return SilverPlan(table, contract, suite, "u", "q", "ql", "l", "b", limit, "w",
                      RulesInForce.read(ROOT / "expectations" / "orders.contract.yaml",
                                        ROOT / "expectations" / "orders.suite.json"), "r")


def verdicts(plan: SilverPlan, failures: dict[str, int], rows: int = 100,
             nulls: dict[str, int] | None = None) -> list:
    return results(plan.suite, rows, nulls or {}, failures)


def test_a_critical_rule_over_its_threshold_stops_the_batch() -> None:
    plan = orders_plan()
    rule = next(r for r in plan.suite.rules if r.critical)
    limit = rule.max_unexpected_percent or plan.critical_max_unexpected_percent
    under = int(limit)  # percent of 100 records
    check_critical(plan, verdicts(plan, {rule.name: under}), 7)
    with pytest.raises(LakehouseError) as err:
        check_critical(plan, verdicts(plan, {rule.name: under + 1}), 7)
    assert err.value.code is ErrorCode.CRITICAL_RULE_FAILED
    assert err.value.params["rule"] == rule.name
    # The share is of the rows GX considers: nulls in the column do not count.
    with pytest.raises(LakehouseError):
        check_critical(plan, verdicts(plan, {rule.name: under}, nulls={rule.column: 10}), 7)
    # Non-critical rules never stop a batch, however often they fail.
    other = next(r for r in plan.suite.rules if not r.critical)
    check_critical(plan, verdicts(plan, {other.name: 100}), 7)


def test_results_follow_gx_formulas() -> None:
    plan = orders_plan()
    amount = next(r for r in plan.suite.rules if r.name == "amount_in_range")
    by_rule = {r.rule: r for r in verdicts(plan, {"amount_in_range": 3}, rows=50,
                                           nulls={amount.column: 20})}
    r = by_rule["amount_in_range"]
    assert (r.element_count, r.unexpected_count, r.success) == (50, 3, False)
    assert r.unexpected_percent == pytest.approx(10.0)  # 3 of the 30 non-null amounts
    clean = by_rule["currency_iso_code"]
    assert (clean.unexpected_count, clean.unexpected_percent, clean.success) == (0, 0.0, True)
    # Nothing to consider (every value null): GX calls it a success with 0%.
    empty = verdicts(plan, {}, rows=5, nulls={amount.column: 5})
    assert next(r for r in empty if r.rule == "amount_in_range").success


def quarantined() -> pa.Table:
    stamp = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return pa.Table.from_pylist([
        {"failed_rules": ["expect.amount_in_range"], "reasons": ["amount must be ..."],
         "batch_id": 1, "_topic": "t", "_partition": 0, "_offset": 1, "resolution": None,
         "resolved_at": None},
        {"failed_rules": ["contract.malformed_json"], "reasons": ["not JSON"],
         "batch_id": 2, "_topic": "t", "_partition": 0, "_offset": 2, "resolution": None,
         "resolved_at": None},
        {"failed_rules": ["expect.amount_in_range", "contract.type:quantity"],
         "reasons": ["amount ...", "quantity ..."], "batch_id": 2, "_topic": "t",
         "_partition": 1, "_offset": 3, "resolution": "replayed", "resolved_at": stamp},
    ])


def test_selection_picks_open_records_by_rule_batch_or_coordinates() -> None:
    rows = quarantined()
    assert select(rows, Selection(rules=("amount_in_range",))).column("_offset").to_pylist() == [1]
    assert select(rows, Selection(batches=(2,))).column("_offset").to_pylist() == [2]
    assert select(rows, Selection(coordinates=(("t", 0, 2),))).column("_offset").to_pylist() == [2]
    assert select(rows, Selection(everything=True)).num_rows == 2  # resolved ones never again
    assert Selection().empty


def test_rule_summary_counts_open_records_only() -> None:
    summary = rule_summary(quarantined())
    assert [(r.rule, r.records) for r in summary] == [("contract.malformed_json", 1),
                                                      ("expect.amount_in_range", 1)]


def test_suite_and_contract_files_in_the_project_load(tmp_path: Path) -> None:
    for name in ("orders", "clickstream"):
        contract = load_contract(ROOT / "expectations" / f"{name}.contract.yaml")
        suite = load_suite(ROOT / "expectations" / f"{name}.suite.json",
                           tuple(f.name for f in contract.fields))
        assert suite.rules and contract.key == "event_id"


def test_a_contract_edit_adds_columns_and_refuses_type_changes() -> None:
    from pyspark.sql import types as T

    from lakehouse.layers.routing import contract_changes
    table = T.StructType([T.StructField("a", T.StringType()), T.StructField("b", T.LongType()),
                          T.StructField("gone", T.StringType())])
    rows = T.StructType([T.StructField("a", T.StringType()), T.StructField("b", T.DoubleType()),
                         T.StructField("new", T.BooleanType())])
    added, conflicts = contract_changes(table, rows)
    assert [f.name for f in added] == ["new"]
    assert conflicts == ["b is bigint in the table, double in the contract"]
    assert contract_changes(table, table) == ([], [])


def test_the_accounting_line_tells_a_stream_behind_from_a_broken_identity() -> None:
    from lakehouse.layers.ledger import Accounting
    caught_up = Accounting("silver.orders", 100, 90, 7, 3, 100)
    assert caught_up.holds and caught_up.describe().endswith("(holds)")
    behind = Accounting("silver.orders", 140, 90, 7, 3, 100)
    assert not behind.holds and behind.pending == 40
    assert "(40 bronze records not processed yet" in behind.describe()
    broken = Accounting("silver.orders", 100, 91, 7, 3, 100)
    assert broken.pending == 0 and broken.describe().endswith("(DOES NOT HOLD)")
