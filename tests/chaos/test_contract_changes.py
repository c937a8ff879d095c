"""Contract changes mid-stream, with nothing lost:

- a producer adds a field the contract does not name: silver keeps it in ``extras``;
- a producer changes a field's type: those records are quarantined (``contract.type``);
- the contract file is edited between runs: a new field becomes a column (earlier rows
  null, their value still in ``extras``), a dropped field's column stays (new rows null),
  and a changed type is refused before any query starts (LH-CONTRACT-002).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.generator import Record
from lakehouse.io.kafka_producer import produce
from tests.chaos.checker import check
from tests.conftest import ROOT, run_pipelines, write_config
from tests.e2e.gold_world import BASE, order

pytestmark = pytest.mark.integration


def send(broker: str, topic: str, events: list[dict]) -> None:
    assert produce(broker, topic, [Record(b"k", json.dumps(e).encode(), ())
                                   for e in events]) == len(events)


def silver(warehouse: Path) -> dict[str, dict]:
    rows = DeltaTable(str(warehouse / "silver" / "orders")).to_pyarrow_table().to_pylist()
    return {r["event_id"]: r for r in rows}


def test_contract_changes_between_runs_lose_nothing(broker: str, tmp_path: Path,
                                                    spark: SparkSession) -> None:
    topic = f"orders.contract.{tmp_path.name}"
    expectations = tmp_path / "expectations"
    shutil.copytree(ROOT / "expectations", expectations)
    contract_file = expectations / "orders.contract.yaml"
    warehouse = tmp_path / "warehouse"
    config = write_config(tmp_path / "conf.yaml", broker, warehouse,
                          silver={"expectations_dir": str(expectations)},
                          topics={"orders": topic})

    first = [order(n, BASE) for n in range(10)]
    first[1]["coupon"] = "WINTER"  # a field the contract does not name
    first[2]["quantity"] = "2"  # a type the contract does not allow
    send(broker, topic, first)
    assert (run := run_pipelines(config, spark)).returncode == 0, run.stderr[-3000:]
    rows = silver(warehouse)
    assert json.loads(rows["o-1"]["extras"]) == {"coupon": "WINTER"}
    assert "o-2" not in rows and len(rows) == 9

    contract = yaml.safe_load(contract_file.read_text())
    contract["fields"]["coupon"] = {"type": "string"}
    del contract["fields"]["schema_version"]
    contract_file.write_text(yaml.safe_dump(contract))
    second = [order(n, BASE) for n in range(10, 14)]
    second[0]["coupon"] = "SPRING"
    send(broker, topic, second)
    run = run_pipelines(config, spark)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "the contract adds coupon string" in run.stdout
    rows = silver(warehouse)
    assert rows["o-10"]["coupon"] == "SPRING" and rows["o-10"]["extras"] is None
    assert rows["o-1"]["coupon"] is None and "WINTER" in rows["o-1"]["extras"]  # as it was
    assert rows["o-11"]["schema_version"] is None and rows["o-1"]["schema_version"] == 1

    contract["fields"]["quantity"] = {"type": "number", "required": True}
    contract_file.write_text(yaml.safe_dump(contract))
    send(broker, topic, [order(20, BASE)])
    refused = run_pipelines(config, spark)
    assert refused.returncode == 2 and "LH-CONTRACT-002" in refused.stderr
    assert "quantity is bigint in the table, double in the contract" in refused.stderr
    assert "started" not in refused.stdout  # refused before any query read anything
    assert "o-20" not in silver(warehouse)

    contract["fields"]["quantity"] = {"type": "integer", "required": True}
    contract_file.write_text(yaml.safe_dump(contract))
    assert (run := run_pipelines(config, spark)).returncode == 0, run.stderr[-3000:]
    assert "o-20" in silver(warehouse)
    print(check(config, broker, topic, spark).describe())
