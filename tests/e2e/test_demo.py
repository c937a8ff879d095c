"""`lakehouse demo` end to end on a fresh warehouse, with its own embedded broker."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable

from tests.conftest import free_port, lakehouse, start_run, write_config
from tests.e2e.payments import project_with_payments
from tests.observe.browser import data_pixels, screenshot
from tests.observe.test_report import PLOTS

pytestmark = pytest.mark.integration


def test_demo_on_fresh_warehouse(tmp_path: Path) -> None:
    """The demo with its own broker and schema registry, orders in Avro (the documented
    conf switch), clickstream in JSON, and a third source added as the README says
    (payments: a contract, a suite and a gold file), its events made from its contract."""
    warehouse = tmp_path / "warehouse"
    project = project_with_payments(tmp_path / "project")
    config = write_config(tmp_path / "conf.yaml", f"127.0.0.1:{free_port()}", warehouse,
                          embedded=True,
                          silver={"expectations_dir": str(project / "expectations")})
    doc = yaml.safe_load(config.read_text())
    doc["sources"] = {"orders": {"format": "avro"}}
    doc["schema_registry"] = {"url": f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"}
    config.write_text(yaml.safe_dump(doc))
    try:
        result = lakehouse(config, "demo", "--count", "400", "--live-count", "50",
                           project=project)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        assert "demo finished" in result.stdout
        assert "schema registry running" in result.stdout
        assert "produced 400 orders events (avro" in result.stdout
        assert "produced 400 clickstream events (json" in result.stdout
        assert "produced 400 payments events (json" in result.stdout
        assert "silver.payments: bronze 450 = silver " in result.stdout
        assert DeltaTable(str(warehouse / "gold" / "payments_by_method_daily")).version() >= 1
        assert "payment_id=None" not in result.stdout
        rules = {rule for row in DeltaTable(str(warehouse / "silver" / "orders_quarantine"))
                 .to_pyarrow_table(columns=["failed_rules"]).column(0).to_pylist()
                 for rule in row}
        assert rules & {"contract.avro_magic_byte", "contract.avro_unknown_schema_id",
                        "contract.avro_undecodable"}, rules
        assert not {r for r in rules if r.startswith("contract.type")}, rules
        for name in ("orders", "clickstream", "payments"):
            table = DeltaTable(str(warehouse / "bronze" / name))
            assert table.to_pyarrow_table(columns=["offset"]).num_rows == 450
            assert f"bronze.{name}" in result.stdout
        for name in ("revenue_by_category_5m", "revenue_by_country_daily", "active_users_1m",
                     "sessions_daily"):
            assert DeltaTable(str(warehouse / "gold" / name)).version() >= 1
            fresh = next(ln for ln in result.stdout.splitlines()
                         if ln.startswith(f"gold.{name}: produce -> visible in gold"))
            assert "over " in fresh  # the live events reached gold and were measured
        # The demo wrote lineage and drew it: topic -> bronze -> silver -> gold.
        for producer in ("spark.jsonl", "lakehouse.jsonl"):  # the listener's and ours
            assert (warehouse / "_lineage" / producer).stat().st_size > 0
        tree = result.stdout[result.stdout.index("lineage (OpenLineage events"):]
        for line in ("topic shop.orders.v1", "job bronze.orders", "bronze.orders  v",
                     "job silver.orders", "silver.orders_quarantine  v",
                     "job gold.revenue_by_category_5m", "gold.sessions_daily  v"):
            assert line in tree, tree

        _observed(config, warehouse, result.stdout, tmp_path)

        status = lakehouse(config, "broker", "status")
        assert status.returncode == 0 and "running" in status.stdout
        assert lakehouse(config, "broker", "up").returncode == 0, "up twice is fine"
        assert lakehouse(config, "registry", "status").returncode == 0
    finally:
        down = lakehouse(config, "broker", "down")
        registry_down = lakehouse(config, "registry", "down")
    assert "stopped" in down.stdout and "stopped" in registry_down.stdout
    assert lakehouse(config, "broker", "status").returncode == 3
    assert lakehouse(config, "registry", "status").returncode == 3


def _observed(config: Path, warehouse: Path, demo_out: str, tmp_path: Path) -> None:
    """The demo's event log agrees with its tables; status, slo and the report read it."""
    events = DeltaTable(str(warehouse / "_system" / "events")).to_pyarrow_table().to_pylist()
    by: dict[str, list[dict]] = {}
    for row in events:
        by.setdefault(row["pipeline"], []).append(row)
    assert set(by) == {"bronze.orders", "bronze.clickstream", "bronze.payments",
                       "silver.orders", "silver.clickstream", "silver.payments",
                       "gold.revenue_by_category_5m", "gold.revenue_by_country_daily",
                       "gold.active_users_1m", "gold.sessions_daily",
                       "gold.payments_by_method_daily"}
    assert not [r for r in events if r["error"]]
    for name in ("orders", "clickstream", "payments"):
        assert sum(r["input_rows"] for r in by[f"bronze.{name}"]) == 450  # each record once
        assert all(r["kafka_lag"] is not None and dict(r["duration_ms"]).get("addBatch")
                   for r in by[f"bronze.{name}"])
        silver = by[f"silver.{name}"]
        assert sum(r["input_rows"] for r in silver) == 450
        quarantined = DeltaTable(str(warehouse / "silver" / f"{name}_quarantine")) \
            .to_pyarrow_table(columns=["resolution"]).num_rows
        assert sum(r["quarantined"] for r in silver) == quarantined > 0
    gold = [r for name, rows in by.items() if name.startswith("gold.") for r in rows
            if r["input_rows"]]
    assert gold and all(0 < r["latency_p50_ms"] <= r["latency_p95_ms"] <= r["latency_max_ms"]
               for r in gold)

    counted = lakehouse(config, "query", "SELECT count(*) AS n FROM _system.events",
                        "--format", "csv")
    assert counted.returncode == 0 and counted.stdout.split() == ['"n"', str(len(events))]
    status = lakehouse(config, "status")
    assert status.returncode == 0, status.stderr[-2000:]
    lines = status.stdout.splitlines()
    assert any(ln.startswith("silver.orders ") and "not running" in ln and " 0 versions " in ln
               for ln in lines), status.stdout
    assert "silver quality over the last 60 minutes" in status.stdout
    slo = lakehouse(config, "slo")
    assert slo.returncode == 3, slo.stdout + slo.stderr  # the demo's faults: 10% quarantined
    # Freshness depends on this machine's load; the faults make the pass rate breach.
    assert slo.stderr.startswith("breached: ") and "silver pass rate" in slo.stderr
    assert next(ln for ln in slo.stdout.splitlines()
                if ln.startswith("silver duplicate rate")).split()[-1] == "ok"

    report = warehouse / "report.html"
    assert f"report (plots of throughput, lag, freshness, quality): {report}" in demo_out
    for plot in PLOTS:
        image = screenshot(report, plot, tmp_path / f"{plot}.png")
        assert data_pixels(image) > 400, f"the report's {plot} plot shows no data"


def test_missing_broker_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "conf.yaml", f"127.0.0.1:{free_port()}",
                          tmp_path / "warehouse", embedded=False)
    result = lakehouse(config, "run", "--until-idle")
    assert result.returncode == 2
    assert "LH-KAFKA-001" in result.stderr and "lakehouse broker up" in result.stderr


def test_killed_driver_jvm_is_a_clear_error(broker: str, tmp_path: Path) -> None:
    """The driver JVM SIGKILLed under a running job (as the OOM killer would): the job
    says so, with its stable code, instead of a py4j connection traceback."""
    warehouse = tmp_path / "warehouse"
    config = write_config(tmp_path / "conf.yaml", broker, warehouse)
    with start_run(config) as proc:
        try:
            os.kill(_java_child(proc.pid), signal.SIGKILL)
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 2, out[-2000:] + err[-3000:]
    assert "LH-JVM-002" in err and "killed by signal 9" in err, err[-3000:]
    assert "Traceback" not in err


def _java_child(parent: int) -> int:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = stat.read_text().rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and (stat.parent / "comm").read_text().strip() == "java":
            return int(stat.parent.name)
    raise AssertionError(f"process {parent} has no JVM child")


def test_bad_config_fails_before_spark(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("project: x\nkafka: {bootstrap_servers: 'h:1'}\nwarehouse: {root: /tmp}\n"
                   "streaming: {max_offset_per_trigger: 5}\n")
    result = lakehouse(bad, "run", "--until-idle")
    assert result.returncode == 2
    assert "LH-CONF-003" in result.stderr and "streaming.max_offset_per_trigger" in result.stderr
    assert "Spark" not in result.stdout
