"""``lakehouse audit``: the contract and suite in force at a version or an instant (silver,
and gold through it; the hashes in history and explain), the audit horizon, and the
evidence bundle. The scenario runs the pipelines on a real broker and Spark and changes
the suite between two runs."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from pyspark.sql import SparkSession

from lakehouse import graph
from lakehouse.audit.evidence import check, export
from lakehouse.audit.explain import explain, rules_in
from lakehouse.audit.rules import InForce, in_force, latest_rules
from lakehouse.audit.timetravel import Version, history, history_table
from lakehouse.config import load_config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.chain import links
from lakehouse.io.digest import RowsDigest
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


@dataclass(frozen=True)
class Scenario:
    """Two runs of the pipelines with a suite change between them."""

    world: World
    rules_dir: Path
    before: InForce
    gold_before: InForce
    old_suite: str


@pytest.fixture(scope="module")
def scenario(broker: str, spark: SparkSession,
             tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    root = tmp_path_factory.mktemp("rules")
    rules_dir = root / "expectations"
    shutil.copytree(ROOT / "expectations", rules_dir)
    w = World(broker, root)
    doc = yaml.safe_load(w.config.read_text())
    doc["silver"] = {**doc.get("silver", {}), "expectations_dir": str(rules_dir)}
    w.config.write_text(yaml.safe_dump(doc))
    w.send([order(n, BASE) for n in range(10)], [])
    assert (run := w.run_here(spark)).returncode == 0, run.stderr[-3000:]
    pipeline = graph.build(load_config(w.config))
    before = in_force(pipeline, "silver.orders")
    gold_before = in_force(pipeline, "gold.revenue_by_category_5m")
    old_suite = (rules_dir / "orders.suite.json").read_text()
    suite = json.loads(old_suite)
    suite["meta"]["changed_by"] = "tests: a new version of the suite"
    (rules_dir / "orders.suite.json").write_text(json.dumps(suite, indent=1))
    w.send([order(n, BASE) for n in range(10, 20)], [])
    assert (run := w.run_here(spark)).returncode == 0, run.stderr[-3000:]
    return Scenario(w, rules_dir, before, gold_before, old_suite)


def test_the_rules_in_force_before_and_after_a_suite_change(scenario: Scenario) -> None:
    w, before, gold_before = scenario.world, scenario.before, scenario.gold_before
    assert before.suite.text == scenario.old_suite
    assert before.contract.name == "orders.contract.yaml"
    assert gold_before.routed_by == "silver.orders" and gold_before.suite == before.suite
    config = load_config(w.config)
    pipeline = graph.build(config)
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
    assert before.suite.sha256 in printed.stdout
    assert scenario.old_suite.strip() in printed.stdout


def test_every_table_keeps_the_audit_horizon(scenario: Scenario) -> None:
    listed = lakehouse(scenario.world.config, "audit", "horizon", "--format", "json",
                       timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    reach = {r["table"]: r for r in json.loads(listed.stdout)}
    assert {"bronze.orders", "silver.orders", "silver.orders_quarantine", "silver._batches",
            "gold.revenue_by_category_5m", "_system.rules", "_system.events"} <= set(reach)
    assert {r["retention"] for r in reach.values()} == {"horizon"}
    assert all(r["oldest_readable_version"] == 0 for r in reach.values()), "never vacuumed"


def test_an_evidence_bundle_checks_offline_and_names_a_changed_file(
        scenario: Scenario, tmp_path: Path) -> None:
    w, gold = scenario.world, "gold.revenue_by_category_5m"
    pipeline = graph.build(load_config(w.config))
    then = export(pipeline, gold, scenario.gold_before.version, tmp_path / "then.zip")
    with zipfile.ZipFile(then.path) as bundle:
        names = set(bundle.namelist())
        manifest = json.loads(bundle.read("manifest.json"))
        provenance = json.loads(bundle.read("provenance.json"))
        batches = json.loads(bundle.read("batches.json"))
        rows = pq.read_table(io.BytesIO(bundle.read("rows.parquet")))
        link = json.loads(bundle.read("chain.json"))["link"]
    assert {"rows.parquet", "rows.csv", "provenance.json", "batches.json", "lineage.jsonl",
            "chain.json", "manifest.json"} <= names
    # the version's link: its digest is in the chain, its content the rows exported
    assert link == asdict(links(pipeline.node(gold).uri)[scenario.gold_before.version])
    assert RowsDigest.parse(link["content"]).rows == rows.num_rows
    rules = {n for n in names if n.startswith("rules/")}
    assert rules == {f"rules/{f.sha256}-{f.name}" for f in
                     (scenario.before.contract, scenario.before.suite)}, "the rules of then"
    assert manifest["version"] == scenario.gold_before.version == provenance["version"]
    assert rows.num_rows == manifest["rows"] > 0
    assert provenance["version_offsets"] and batches["ledger"] and batches["quality"]
    assert sum(r["bronze_rows"] for r in batches["ledger"]) == 10
    now = export(pipeline, gold, None, tmp_path / "now.zip")
    with zipfile.ZipFile(now.path) as bundle:
        assert len([n for n in bundle.namelist() if n.startswith("rules/")]) == 3, \
            "one contract, the suite before and after the change"

    checked = lakehouse(w.config, "audit", "check", str(then.path), timeout=120)
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert then.manifest_sha256 in checked.stdout
    for name, change in (("rows.csv", lambda b: b[:-2] + bytes([b[-2] ^ 1]) + b[-1:]),
                         ("extra.txt", None)):
        altered = tmp_path / f"altered-{name}.zip"
        with zipfile.ZipFile(then.path) as src, zipfile.ZipFile(altered, "w") as dst:
            for n in src.namelist():
                data = src.read(n)
                dst.writestr(n, change(data) if change and n == name else data)
            if change is None:
                dst.writestr(name, b"added later")
        with pytest.raises(LakehouseError) as err:
            check(altered)
        assert err.value.code is ErrorCode.AUDIT_BUNDLE_ALTERED and name in str(err.value)
