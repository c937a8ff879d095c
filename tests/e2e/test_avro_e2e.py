"""Avro on the wire, end to end on the broker and the registry: two schema versions land in
silver exactly as their JSON twins do, faults in the wire format are quarantined with
their reasons, the registry refuses a schema the level forbids, nothing is lost."""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse import graph
from lakehouse.config import load_config
from lakehouse.generator import JSON, Fault, Record, order_event, wire_fault
from lakehouse.io.kafka_admin import TopicSpec, ensure_topics
from lakehouse.io.kafka_producer import produce
from lakehouse.layers.ledger import accounting
from lakehouse.schemas import avro_encoding
from tests.conftest import ROOT, lakehouse, run_pipelines, write_config

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
LINEAGE = {"_topic", "_partition", "_offset", "_bronze_version", "_ingested_at",
           "_kafka_timestamp"}
V2_FIELD = '  coupon:         {type: string, default: "none", description: "added in v2"}\n'


def contracts(folder: Path, extra: str = "") -> Path:
    """The project's contracts and suites, the orders contract with ``extra`` fields."""
    shutil.copytree(ROOT / "expectations", folder)
    orders = folder / "orders.contract.yaml"
    orders.write_text(orders.read_text() + extra)
    return folder


def config(tmp_path: Path, name: str, broker: str, registry: str, topic: str, fmt: str,
           expectations: Path) -> Path:
    """A config named after its contracts' folder, its warehouse ``<tmp>/<fmt>``."""
    path = write_config(tmp_path / f"{fmt}-{expectations.name}.yaml", broker, tmp_path / name,
                        silver={"expectations_dir": str(expectations)})
    doc = yaml.safe_load(path.read_text())
    doc["sources"] = {"orders": {"topic": topic, "format": fmt}}
    doc["schema_registry"] = {"url": registry, "embedded": {"enabled": False}}
    path.write_text(yaml.safe_dump(doc))
    return path


def events(seed: int, count: int, coupons: bool) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = [order_event(rng, NOW) for _ in range(count)]
    out[0]["category"] = "café & küche"
    out[1]["event_time"] = (NOW - timedelta(hours=26)).isoformat().replace("+00:00", "Z")
    out[2]["amount"] = 12.5
    if coupons:
        for event in out[::2]:
            event["coupon"] = f"WINTER-{rng.randrange(100)}"
    return out


def silver_rows(warehouse: Path) -> dict[str, dict[str, Any]]:
    rows = DeltaTable(str(warehouse / "silver" / "orders")).to_pyarrow_table().to_pylist()
    return {r["event_id"]: {k: v for k, v in r.items() if k not in LINEAGE} for r in rows}


def test_avro_orders_land_as_their_json_twins_and_faults_are_quarantined(
        broker: str, schema_registry: str, tmp_path: Path, spark: SparkSession) -> None:
    avro_topic, json_topic = f"avro.{tmp_path.name}", f"json.{tmp_path.name}"
    ensure_topics(broker, [TopicSpec(avro_topic, 3), TopicSpec(json_topic, 3)])
    v1 = contracts(tmp_path / "v1")
    v2 = contracts(tmp_path / "v2", V2_FIELD)
    avro_v1 = config(tmp_path, "avro", broker, schema_registry, avro_topic, "avro", v1)
    avro_v2 = config(tmp_path, "avro", broker, schema_registry, avro_topic, "avro", v2)
    json_v2 = config(tmp_path, "json", broker, schema_registry, json_topic, "json", v2)

    # v1 producers, then v2 producers (an optional field with a default: BACKWARD allows it)
    first, second = events(1, 60, coupons=False), events(2, 60, coupons=True)
    encode_v1 = avro_encoding(load_config(avro_v1), "orders").encode
    encode_v2 = avro_encoding(load_config(avro_v2), "orders").encode
    twins = [*first, *second]
    avro_values = [encode_v1(e) for e in first] + [encode_v2(e) for e in second]
    assert {v[1:5] for v in avro_values[:60]} != {v[1:5] for v in avro_values[60:]}, \
        "v1 and v2 records carry different schema ids"
    rng = random.Random(3)
    faults = {
        Fault.BAD_MAGIC_BYTE: wire_fault(Fault.BAD_MAGIC_BYTE, avro_values[5], rng),
        Fault.UNKNOWN_SCHEMA_ID: wire_fault(Fault.UNKNOWN_SCHEMA_ID, avro_values[6], rng),
        Fault.TRUNCATED: wire_fault(Fault.TRUNCATED, avro_values[70], rng),
    }
    wrong_format = JSON.encode(first[7])  # JSON written to the Avro topic
    redelivered = avro_values[10]
    avro_records = [Record(e["order_id"].encode(), v, ()) for e, v in zip(twins, avro_values, strict=True)]
    avro_records += [Record(b"bad", v, ()) for v in (*faults.values(), wrong_format,
                                                     redelivered, None, b"\x00\x00")]
    assert produce(broker, avro_topic, avro_records) == len(avro_records) == 127
    assert produce(broker, json_topic, [Record(e["order_id"].encode(), JSON.encode(e), ())
                                        for e in twins]) == 120

    runs = {path: run_pipelines(path, spark, ["orders"]) for path in (avro_v2, json_v2)}
    for done in runs.values():
        assert done.returncode == 0, done.stderr[-3000:]
    assert f"schema of orders: subject {avro_topic}-value" in runs[avro_v2].stdout
    assert "schema of orders" not in runs[json_v2].stdout
    avro_rows, json_rows = silver_rows(tmp_path / "avro"), silver_rows(tmp_path / "json")
    assert len(avro_rows) == 120 and avro_rows == json_rows
    assert {avro_rows[e["event_id"]]["coupon"] for e in first} == {"none"}  # v2's default
    assert avro_rows[second[0]["event_id"]]["coupon"] == second[0]["coupon"]
    assert str(avro_rows[first[2]["event_id"]]["amount"]) == "12.50"

    quarantine = DeltaTable(str(tmp_path / "avro" / "silver" / "orders_quarantine")
                            ).to_pyarrow_table().to_pylist()
    rules = sorted(tuple(r["failed_rules"]) for r in quarantine)
    assert rules == sorted([("contract.avro_magic_byte",), ("contract.avro_unknown_schema_id",),
                            ("contract.avro_undecodable",), ("contract.avro_magic_byte",),
                            ("contract.tombstone",), ("contract.avro_magic_byte",)])
    reasons = " | ".join(r for row in quarantine for r in row["reasons"])
    assert "byte 0x7B" in reasons and "shorter than the Confluent wire format" in reasons
    assert f"is not a registered version of subject {avro_topic}-value" in reasons
    v2 = load_config(avro_v2)
    pipeline = graph.build(v2)
    acc = accounting(pipeline, pipeline.query("silver.orders").definition)
    assert (acc.bronze_rows, acc.quarantined, acc.duplicates) == (127, 6, 1) and acc.holds


def test_the_registry_refuses_a_schema_the_level_forbids(
        broker: str, schema_registry: str, tmp_path: Path) -> None:
    topic = f"refused.{tmp_path.name}"
    ensure_topics(broker, [TopicSpec(topic, 1)])
    v1 = contracts(tmp_path / "v1")
    breaking = contracts(tmp_path / "bad", "  coupon:         {type: string, required: true}\n")
    good = config(tmp_path, "good", broker, schema_registry, topic, "avro", v1)
    bad = config(tmp_path, "bad", broker, schema_registry, topic, "avro", breaking)
    done = lakehouse(good, "produce", "orders", "--count", "5")
    assert done.returncode == 0, done.stderr[-3000:]
    done = lakehouse(bad, "produce", "orders", "--count", "5")
    assert done.returncode == 2
    assert "LH-REGISTRY-003" in done.stderr and f"{topic}-value" in done.stderr
    checked = lakehouse(bad, "contract", "check", "--against", "registry")
    assert checked.returncode == 2 and "LH-CONTRACT-003" in checked.stderr
    assert "field coupon" in checked.stdout and "new_field_without_default" in checked.stdout


AGREE_BASE = """
name: t
key: id
event_time: at
fields:
  id: {type: string, required: true}
  at: {type: timestamp, required: true}
  amount: {type: "decimal(12,2)", required: true}
  n: {type: integer, default: 1}
  note: {type: string}
"""
CHANGES = {
    "add optional": AGREE_BASE + '  c: {type: string, default: "x"}\n',
    "add required": AGREE_BASE + "  c: {type: string, required: true}\n",
    "remove required": AGREE_BASE.replace('  amount: {type: "decimal(12,2)", required: true}\n',
                                          ""),
    "remove optional": AGREE_BASE.replace("  note: {type: string}\n", ""),
    "decimal to number": AGREE_BASE.replace('"decimal(12,2)"', "number"),
    "integer to number": AGREE_BASE.replace("n: {type: integer", "n: {type: number"),
    "rename the record": AGREE_BASE.replace("name: t", "name: u"),
}


@pytest.mark.parametrize("level", ["BACKWARD", "FORWARD", "FULL"])
def test_contract_check_predicts_the_registry(schema_registry: str, level: str) -> None:
    """For each kind of change, `breaches` (what `contract check` runs) and the registry
    itself give the same verdict under the level."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    from lakehouse.io.schema_registry import SchemaRegistry
    from lakehouse.quality.avro import avro_schema, breaches
    from lakehouse.quality.contract import parse_contract

    registry = SchemaRegistry(schema_registry)
    itself = SchemaRegistryClient({"url": schema_registry})  # the registry's own verdict
    old = avro_schema(parse_contract(AGREE_BASE, "t.contract.yaml"))
    verdicts = {}
    for name, text in CHANGES.items():
        new = avro_schema(parse_contract(text, "t.contract.yaml"))
        subject = f"agree.{level}.{name.replace(' ', '-')}-value"
        registry.publish(subject, old, level)
        allowed = itself.test_compatibility(subject, Schema(json.dumps(new), "AVRO"))
        assert allowed == (not breaches(old, new, level)), (level, name)
        verdicts[name] = allowed
    assert verdicts["add optional"] and not verdicts["decimal to number"]
    assert verdicts["add required"] == (level == "FORWARD")
    assert verdicts["remove required"] == (level == "BACKWARD")
