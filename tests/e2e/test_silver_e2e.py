"""Silver end to end on a real broker: contracts, expectations, dedup, quarantine, replay,
and the accounting identity, also across hard kills mid-batch."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse import graph
from lakehouse.config import load_config
from lakehouse.generator import Fault, Record, generate
from lakehouse.io.kafka_admin import TopicSpec, ensure_topics
from lakehouse.io.kafka_producer import produce
from lakehouse.layers.ledger import accounting
from tests.conftest import ROOT, lakehouse, quarantine_replay_here, run_pipelines, write_config
from tests.shapes import shape

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
"""When this module was imported: the events' times are set relative to it, so every
expectation that compares one with the processing time keeps a margin of days (a slow
suite reaches these tests an hour or more after collection)."""
FUTURE = NOW + timedelta(days=365)


def iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order(n: int, **changes: Any) -> dict[str, Any]:
    event = {"event_id": f"ev-{n}", "event_type": "order_placed", "order_id": f"o-{n}",
             "customer_id": f"c-{n % 7}", "event_time": iso(NOW - timedelta(minutes=n % 50)),
             "amount": round(10 + n * 0.25, 2), "currency": "EUR", "quantity": 1 + n % 3,
             "category": "books", "country": "DE", "schema_version": 1}
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


def record(payload: Any) -> Record:
    value = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Record(b"k", value, ())


# (payload, the exact rules it fails)
INVALID: list[tuple[Any, set[str]]] = [
    (b"{not json", {"contract.malformed_json"}),
    (b"", {"contract.malformed_json"}),
    (b"[1, 2, 3]", {"contract.not_an_object"}),
    (order(900, amount="12.50"), {"contract.type:amount"}),
    (order(901, quantity=2.5, customer_id=1234),
     {"contract.type:quantity", "contract.type:customer_id"}),
    (order(902, amount=...), {"contract.required:amount"}),
    (order(903, event_id=None), {"contract.required:event_id"}),
    (order(904, amount=-5), {"expect.amount_in_range"}),
    (order(905, quantity=0), {"expect.quantity_in_range"}),
    (order(906, currency="usd"), {"expect.currency_iso_code"}),
    (order(907, country="Germany", category=""),
     {"expect.country_iso_code", "expect.category_not_empty"}),
    (order(908, event_time=iso(FUTURE)), {"contract.future:event_time"}),
    (order(909, event_time="2026-11-20 10:00:00"), {"contract.timestamp:event_time"}),
    (order(910, amount=12.345), {"contract.decimal:amount"}),
]


def valid_events(first: int, count: int) -> list[dict[str, Any]]:
    events = [order(n) for n in range(first, first + count)]
    events[0]["category"] = "café & küche"
    events[1]["category"] = "文具"
    events[2]["coupon"] = "WINTER"
    events[2]["nested"] = {"a": [1, 2]}
    events[3]["event_time"] = iso(NOW - timedelta(hours=26))  # late, still valid
    return events


def setup(broker: str, tmp_path: Path, **config: Any) -> tuple[Path, str]:
    topic = f"orders.{tmp_path.name}"
    path = write_config(tmp_path / "conf.yaml", broker, tmp_path / "warehouse",
                        topics={"orders": topic}, **config)
    ensure_topics(broker, [TopicSpec(topic, 3)])
    return path, topic


def run(config: Path, *args: str, crash_at: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return lakehouse(config, *(args or ("run", "--until-idle", "--table", "orders")),
                     crash_at=crash_at, env=env)


def table(warehouse: Path, name: str) -> Any:
    return DeltaTable(str(warehouse / "silver" / name)).to_pyarrow_table()


def orders_accounting(config: Path) -> Any:
    loaded = load_config(config)
    pipeline = graph.build(loaded)
    return accounting(pipeline, pipeline.query("silver.orders").definition)


def test_silver_holds_unique_valid_events_and_quarantine_the_rest(
        broker: str, tmp_path: Path, spark: SparkSession) -> None:
    config, topic = setup(broker, tmp_path)
    warehouse = tmp_path / "warehouse"
    first = valid_events(0, 40)
    redelivered = [first[i] for i in (5, 6, 7, 5, 30)]  # ev-5 three times in all
    batch1 = [record(e) for e in first] + [record(p) for p, _ in INVALID] \
        + [record(e) for e in redelivered]
    assert produce(broker, topic, batch1) == len(batch1)
    done = run_pipelines(config, spark, ["orders"])
    assert done.returncode == 0, done.stderr[-3000:]

    silver = table(warehouse, "orders")
    ids = silver.column("event_id").to_pylist()
    assert sorted(ids) == sorted(e["event_id"] for e in first)  # each once, nothing else
    by_id = {r["event_id"]: r for r in silver.to_pylist()}
    assert by_id["ev-0"]["category"] == "café & küche" and by_id["ev-1"]["category"] == "文具"
    assert json.loads(by_id["ev-2"]["extras"]) == {"coupon": "WINTER", "nested": {"a": [1, 2]}}
    assert by_id["ev-1"]["extras"] is None
    assert str(by_id["ev-4"]["amount"]) == "11.00"  # DECIMAL(12,2)

    quarantine = table(warehouse, "orders_quarantine").to_pylist()
    expected = {(p if isinstance(p, bytes) else json.dumps(p).encode()): rules
                for p, rules in INVALID}
    assert {q["value"]: set(q["failed_rules"]) for q in quarantine} == expected
    assert len(quarantine) == len(INVALID)
    assert all(len(q["reasons"]) == len(q["failed_rules"]) and all(q["reasons"])
               for q in quarantine)

    acc = orders_accounting(config)
    assert (acc.bronze_rows, acc.silver_rows, acc.quarantined, acc.duplicates) == \
        (len(batch1), 40, len(INVALID), len(redelivered))
    assert acc.holds

    # A second run: redeliveries of first-run events (a day "later" for silver) + new ones.
    second = valid_events(100, 10)
    batch2 = [record(e) for e in second] + [record(first[i]) for i in (0, 1, 39)]
    produce(broker, topic, batch2)
    done = run_pipelines(config, spark, ["orders"])
    assert done.returncode == 0, done.stderr[-3000:]
    ids = table(warehouse, "orders").column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == 50
    acc = orders_accounting(config)
    assert acc.duplicates == len(redelivered) + 3 and acc.holds
    ledger = table(warehouse, "_batches").to_pylist()
    assert all(line["bronze_rows"] == line["silver_rows"] + line["quarantined_rows"]
               + line["duplicates_in_batch"] + line["duplicates_in_silver"] for line in ledger)
    quality = table(warehouse, "_quality")
    amount = quality.filter(pc.equal(quality.column("rule"), "amount_in_range")).to_pylist()
    assert sum(r["unexpected_count"] for r in amount) == 1  # GX saw the -5 amount

    # Fix the suite (negative amounts are allowed after all) and replay those records.
    fixed = tmp_path / "expectations"
    shutil.copytree(ROOT / "expectations", fixed)
    suite = fixed / "orders.suite.json"
    suite.write_text(suite.read_text().replace('"column": "amount", "min_value": 0',
                                               '"column": "amount", "min_value": -10'))
    text = config.read_text().replace("silver: {}", f"silver: {{expectations_dir: {fixed}}}")
    config.write_text(text)
    done = run(config, "quarantine", "replay", "orders", "--rule", "amount_in_range")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 -> silver" in done.stdout
    assert "ev-904" in table(warehouse, "orders").column("event_id").to_pylist()
    resolved = [q for q in table(warehouse, "orders_quarantine").to_pylist() if q["resolution"]]
    assert [(q["event_id"], q["resolution"]) for q in resolved] == [("ev-904", "replayed")]
    acc = orders_accounting(config)
    assert acc.silver_rows == 51 and acc.quarantined == len(INVALID) - 1 and acc.holds
    # The command's own process replayed above; the same replay again, and another rule's,
    # on the suite's warm Spark session.
    again = quarantine_replay_here(config, spark, "orders", ["amount_in_range"])
    assert again.returncode == 2 and "LH-QUARANTINE-001" in again.stderr
    # A second replay, of another rule fixed later, lands too (its own batch id).
    suite.write_text(suite.read_text().replace('"column": "quantity", "min_value": 1',
                                               '"column": "quantity", "min_value": 0'))
    second = quarantine_replay_here(config, spark, "orders", ["quantity_in_range"])
    assert second.returncode == 0, second.stderr[-3000:]
    assert "1 -> silver" in second.stdout
    assert "ev-905" in table(warehouse, "orders").column("event_id").to_pylist()
    acc = orders_accounting(config)
    assert acc.silver_rows == 52 and acc.quarantined == len(INVALID) - 2 and acc.holds


def test_identity_holds_after_hard_kills_mid_batch(broker: str, tmp_path: Path,
                                                   spark: SparkSession) -> None:
    config, topic = setup(broker, tmp_path, max_offsets_per_trigger=100,
                          silver={"max_bytes_per_trigger": "24k"})
    records = list(generate(shape("orders"), 700, seed=7, faults=0.25))
    produce(broker, topic, records)
    faults = Counter(r.fault for r in records)
    assert faults[Fault.DUPLICATE] and faults[Fault.MALFORMED]
    for crash in ("silver.orders:after_quarantine_commit:2",
                  "silver.orders:after_delta_commit:4"):
        died = run(config, crash_at=crash)
        assert died.returncode != 0 and "crashing on purpose" in died.stderr, died.stderr[-2000:]
    done = run_pipelines(config, spark, ["orders"])
    assert done.returncode == 0, done.stderr[-3000:]

    valid = [json.loads(r.value)["event_id"] for r in records if r.fault in (None, Fault.LATE)]
    invalid = [r for r in records if r.fault not in (None, Fault.LATE, Fault.DUPLICATE)]
    warehouse = tmp_path / "warehouse"
    ids = table(warehouse, "orders").column("event_id").to_pylist()
    assert sorted(ids) == sorted(valid)
    quarantine = table(warehouse, "orders_quarantine")
    coords = list(zip(*(quarantine.column(c).to_pylist() for c in ("_partition", "_offset")),
                      strict=True))
    assert len(coords) == len(set(coords)) == len(invalid)
    acc = orders_accounting(config)
    assert acc.bronze_rows == 700 and acc.duplicates == faults[Fault.DUPLICATE] and acc.holds
    ledger = table(warehouse, "_batches").to_pylist()
    keys = [(line["app_id"], line["batch_id"]) for line in ledger]
    assert len(keys) == len(set(keys))


def test_a_critical_rule_breach_stops_before_writing(broker: str, tmp_path: Path,
                                                     spark: SparkSession) -> None:
    config, topic = setup(broker, tmp_path)
    events = [order(n, event_type="order_teleported" if n % 2 else "order_paid")
              for n in range(40)]
    produce(broker, topic, [record(e) for e in events])
    done = run_pipelines(config, spark, ["orders"])
    assert done.returncode == 2 and "LH-QUALITY-001" in done.stderr, done.stderr[-2000:]
    assert "event_type_known" in done.stderr
    warehouse = tmp_path / "warehouse"
    assert table(warehouse, "orders").num_rows == 0
    assert table(warehouse, "orders_quarantine").num_rows == 0
    # Lineage: the batch run and the query run both FAILed, with the error.
    from lakehouse.lineage.graph import read_events
    failed = {e["job"]["name"]: e for e in read_events(warehouse / "_lineage" / "lakehouse.jsonl")
              if e["eventType"] == "FAIL"}
    assert {"silver.orders", "silver.orders.batch"} <= set(failed)
    for e in (failed["silver.orders"], failed["silver.orders.batch"]):
        error = e["run"]["facets"]["errorMessage"]
        assert "LH-QUALITY-001" in error["message"] + error.get("stackTrace", "")
