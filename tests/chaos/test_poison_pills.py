"""Poison pills through the real broker: a value of several MB, binary garbage, JSON
nested 1,000 levels deep, invalid UTF-8, NaN and Infinity, a duplicate key and a tombstone,
between valid orders. Bronze keeps each untouched, silver quarantines each with its reason,
and none stops the pipeline."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.generator import POISON_PILLS, Record, generate, order_event, poison_pill
from lakehouse.io.kafka_producer import produce
from tests.chaos.checker import check
from tests.conftest import lakehouse, run_pipelines, write_config
from tests.e2e.gold_world import NOW
from tests.shapes import shape

pytestmark = pytest.mark.integration
RULES = {"garbage": "contract.invalid_utf8", "deep": "contract.malformed_json",
         "invalid_utf8": "contract.invalid_utf8", "nan": "contract.malformed_json",
         "infinity": "contract.malformed_json", "duplicate_key": "contract.duplicate_key",
         "tombstone": "contract.tombstone", "oversized": "contract.too_large"}


def test_each_poison_pill_is_quarantined_with_its_reason(broker: str, tmp_path: Path,
                                                         spark: SparkSession) -> None:
    topic = f"orders.poison.{tmp_path.name}"
    warehouse = tmp_path / "warehouse"
    config = write_config(tmp_path / "conf.yaml", broker, warehouse, topics={"orders": topic})
    rng = random.Random(5)
    pills = [Record(f"p{n}".encode(), poison_pill(kind, order_event(rng, NOW), rng), ())
             for n, kind in enumerate(POISON_PILLS)]
    valid = list(generate(shape("orders"), 200, seed=9))
    assert produce(broker, topic, valid[:100] + pills + valid[100:]) == 200 + len(pills)

    alone = lakehouse(config, "run", "--until-idle", "--table", "silver.orders")
    assert alone.returncode == 2 and "LH-DELTA-004" in alone.stderr  # bronze comes first
    assert "run bronze.orders first" in alone.stderr and "Traceback" not in alone.stderr
    done = run_pipelines(config, spark)  # the pills' run itself: on the warm session
    assert done.returncode == 0, done.stderr[-3000:]
    quarantine = DeltaTable(str(warehouse / "silver" / "orders_quarantine")).to_pyarrow_table(
        columns=["key", "value", "failed_rules", "reasons"]).to_pylist()
    by_key = {r["key"].decode(): r for r in quarantine}
    for n, kind in enumerate(POISON_PILLS):
        row = by_key[f"p{n}"]
        assert row["failed_rules"] == [RULES[kind]], (kind, row["reasons"])
        assert row["value"] == pills[n].value  # the raw record, untouched
    assert len(quarantine) == len(POISON_PILLS)
    silver = DeltaTable(str(warehouse / "silver" / "orders")).to_pyarrow_table(
        columns=["event_id"]).column("event_id").to_pylist()
    assert sorted(silver) == sorted(json.loads(r.value)["event_id"] for r in valid)
    verdict = check(config, broker, topic, spark)
    assert verdict.quarantined == len(POISON_PILLS)
    print(verdict.describe())
