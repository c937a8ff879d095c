"""``lakehouse audit rules``: the contract and suite in force at a version or an instant,
for silver and, through it, gold; the hashes in history and explain. The scenario runs
the pipelines on a real broker and Spark, changes the suite between two runs, and asks
what was in force before and after."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from pyspark.sql import SparkSession

from lakehouse import graph
from lakehouse.audit.explain import explain, rules_in
from lakehouse.audit.rules import in_force, latest_rules
from lakehouse.audit.timetravel import Version, history, history_table
from lakehouse.config import load_config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.quality.in_force import CONTRACT_SHA256, SUITE_SHA256
from tests.conftest import ROOT, lakehouse
from tests.e2e.gold_world import BASE, World, order


def test_history_explain_and_audit_find_the_rules_a_commit_recorded() -> None:
    at = datetime(2026, 12, 6, tzinfo=UTC)
    plain = Version(0, at, "CREATE TABLE", {})
    one = Version(1, at, "WRITE", {CONTRACT_SHA256: "a" * 64, SUITE_SHA256: "b" * 64})
    two = Version(2, at, "WRITE", {CONTRACT_SHA256: "a" * 64, SUITE_SHA256: "c" * 64})
    restore = Version(3, at, "RESTORE", {})
    log = [plain, one, two, restore]
    assert latest_rules(log, 3) is two and latest_rules(log, 1) is one
    assert latest_rules(log, 0) is None
    commits = {v.version: v for v in log}
    assert rules_in(commits, (1, 3)) == [{CONTRACT_SHA256: "a" * 64, SUITE_SHA256: "b" * 64},
                                         {CONTRACT_SHA256: "a" * 64, SUITE_SHA256: "c" * 64}]
    assert rules_in(commits, (0, 0)) == [] and rules_in(commits, None) == []
    shown = history_table(log).column("rules").to_pylist()
    assert shown == [None, f"contract {'a' * 12} suite {'c' * 12}",
                     f"contract {'a' * 12} suite {'b' * 12}", None]


def test_the_rules_in_force_before_and_after_a_suite_change(
        broker: str, spark: SparkSession, tmp_path: Path) -> None:
    rules_dir = tmp_path / "expectations"
    shutil.copytree(ROOT / "expectations", rules_dir)
    w = World(broker, tmp_path)
    doc = yaml.safe_load(w.config.read_text())
    doc["silver"] = {**doc.get("silver", {}), "expectations_dir": str(rules_dir)}
    w.config.write_text(yaml.safe_dump(doc))
    w.send([order(n, BASE) for n in range(10)], [])
    assert (run := w.run_here(spark)).returncode == 0, run.stderr[-3000:]
    config = load_config(w.config)
    pipeline = graph.build(config)
    before = in_force(pipeline, "silver.orders")
    old_suite = (rules_dir / "orders.suite.json").read_text()
    assert before.suite.text == old_suite and before.contract.name == "orders.contract.yaml"
    gold_before = in_force(pipeline, "gold.revenue_by_category_5m")
    assert gold_before.routed_by == "silver.orders" and gold_before.suite == before.suite

    suite = json.loads(old_suite)
    suite["meta"]["changed_by"] = "tests: a new version of the suite"
    (rules_dir / "orders.suite.json").write_text(json.dumps(suite, indent=1))
    w.send([order(n, BASE) for n in range(10, 20)], [])
    assert (run := w.run_here(spark)).returncode == 0, run.stderr[-3000:]
    pipeline = graph.build(load_config(w.config))
    after = in_force(pipeline, "silver.orders")
    assert after.suite.sha256 != before.suite.sha256 and after.contract == before.contract
    assert "changed_by" in after.suite.text
    assert in_force(pipeline, "silver.orders", before.version).suite == before.suite
    assert in_force(pipeline, "gold.revenue_by_category_5m", gold_before.version).suite \
        == before.suite, "gold as it was answers with the silver rules of then"
    assert in_force(pipeline, "silver.orders", datetime.now(UTC)).suite == after.suite

    shown = history(config, "silver.orders").column("rules").to_pylist()
    assert f"suite {after.suite.sha256[:12]}" in shown[0]
    assert any(s and before.suite.sha256[:12] in s for s in shown)
    walked = explain(pipeline, "gold.revenue_by_category_5m")
    assert {r[SUITE_SHA256] for r in walked.rules} == {after.suite.sha256}
    with pytest.raises(LakehouseError) as no_rules:
        in_force(pipeline, "bronze.orders")  # bronze applies no contract
    assert no_rules.value.code is ErrorCode.AUDIT_NO_RULES

    printed = lakehouse(w.config, "audit", "rules", "silver.orders", "--as-of",
                        str(before.version), timeout=120)
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert before.suite.sha256 in printed.stdout and old_suite.strip() in printed.stdout

    # Every table the pipelines created keeps the audit horizon's retention.
    listed = lakehouse(w.config, "audit", "horizon", "--format", "json", timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    reach = {r["table"]: r for r in json.loads(listed.stdout)}
    assert {"bronze.orders", "silver.orders", "silver.orders_quarantine", "silver._batches",
            "gold.revenue_by_category_5m", "_system.rules", "_system.events"} <= set(reach)
    assert {r["retention"] for r in reach.values()} == {"horizon"}
    assert all(r["oldest_readable_version"] == 0 for r in reach.values()), "never vacuumed"
