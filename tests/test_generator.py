"""The synthetic event generator: derived from a contract and its suite, deterministic,
faults as asked, on the contract's own field names."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakehouse.errors import LakehouseError
from lakehouse.generator import (
    AVRO_FAULTS,
    JSON_FAULTS,
    POISON_PILLS,
    REALISTIC,
    Encoding,
    EventShape,
    Fault,
    click_event,
    generate,
    order_event,
    poison_pill,
)
from tests.shapes import payments_shape, shape

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
SOURCES = ("orders", "clickstream", "payments")


@pytest.fixture
def shapes(tmp_path: Path) -> dict[str, EventShape]:
    return {"orders": shape("orders"), "clickstream": shape("clickstream"),
            "payments": payments_shape(tmp_path)}


def test_the_hand_written_makers_are_attached() -> None:
    assert set(REALISTIC) == {"orders", "clickstream"}
    assert REALISTIC["orders"] is order_event and REALISTIC["clickstream"] is click_event
    assert shape("orders").make is order_event and shape("clickstream").make is click_event
    assert shape("orders").key_field == "event_id"


@pytest.mark.parametrize("source", SOURCES)
def test_deterministic_per_seed(source: str, shapes: dict[str, EventShape]) -> None:
    a = list(generate(shapes[source], 200, seed=7, faults=0.2, now=NOW))
    b = list(generate(shapes[source], 200, seed=7, faults=0.2, now=NOW))
    c = list(generate(shapes[source], 200, seed=8, faults=0.2, now=NOW))
    assert a == b
    assert a != c


@pytest.mark.parametrize("source", SOURCES)
def test_valid_events_are_complete_and_keyed(source: str, shapes: dict[str, EventShape]
                                             ) -> None:
    s = shapes[source]
    fields = {f.name for f in s.contract.fields}
    for record in generate(s, 300, seed=1, now=NOW):
        event = json.loads(record.value or b"")
        assert set(s.required) <= set(event) <= fields
        assert record.key == str(event[s.contract.key]).encode()
        assert record.fault is None
        assert dict(record.headers)["content-type"] == b"application/json"


def test_contract_derived_events_pass_the_suite(tmp_path: Path) -> None:
    s = payments_shape(tmp_path)
    assert s.make is None and s.key_field == "payment_id"
    events = [json.loads(r.value or b"") for r in generate(s, 500, seed=3, now=NOW)]
    assert len({e["payment_id"] for e in events}) == 500
    for e in events:
        assert 0.01 <= e["amount"] <= 100_000 and round(e["amount"], 2) == e["amount"]
        assert e["method"] in ("card", "bank_transfer", "wallet")
        assert len(e["currency"]) == 3 and e["currency"].isupper()
        paid = datetime.fromisoformat(e["paid_at"])
        assert e["paid_at"].endswith("Z") and NOW - timedelta(minutes=2) <= paid <= NOW
        assert isinstance(e["customer_id"], str) and e["customer_id"]
    assert {e["method"] for e in events} == {"card", "bank_transfer", "wallet"}
    notes = sum("note" in e for e in events)
    assert 350 < notes < 500  # optional: present most of the time


def test_a_derived_shape_without_maker_is_valid_for_the_repository_sources() -> None:
    for source in ("orders", "clickstream"):
        s = shape(source)
        derived = EventShape(s.contract, s.suite)
        for record in generate(derived, 200, seed=2, now=NOW):
            event = json.loads(record.value or b"")
            assert set(s.required) <= set(event)
            if source == "orders":
                assert 1 <= event["quantity"] <= 10_000 and event.get("schema_version", 1) == 1


def test_orders_values_are_realistic() -> None:
    events = [json.loads(r.value or b"") for r in generate(shape("orders"), 500, seed=3,
                                                           now=NOW)]
    assert all(0 <= e["amount"] <= 1_000_000 and 1 <= e["quantity"] <= 10_000 for e in events)
    assert {e["event_type"] for e in events} == {
        "order_placed", "order_paid", "order_shipped", "order_cancelled", "order_refunded"}
    assert len({e["event_id"] for e in events}) == 500


@pytest.mark.parametrize("source", SOURCES)
def test_faults_mixed_in_on_the_contract_fields(source: str,
                                                shapes: dict[str, EventShape]) -> None:
    s = shapes[source]
    fields = {f.name for f in s.contract.fields}
    records = list(generate(s, 2000, seed=5, faults=0.5, now=NOW))
    kinds = Counter(r.fault for r in records)
    assert 850 < sum(n for k, n in kinds.items() if k is not None) < 1150
    assert set(kinds) - {None} == set(JSON_FAULTS)
    clean_values = {r.value for r in records if r.fault is None}
    assert all(r.value in clean_values for r in records if r.fault is Fault.DUPLICATE)
    range_values = {(f, json.dumps(v)) for f, v in s.range_breaks}
    type_values = {(f, json.dumps(v)) for f, v in s.type_breaks}
    for r in records:
        if r.fault not in (Fault.MISSING_FIELD, Fault.OUT_OF_RANGE, Fault.WRONG_TYPE,
                           Fault.LATE):
            continue
        event = json.loads(r.value or b"")
        assert set(event) <= fields, r  # only the contract's own field names
        key = s.contract.key
        if key in event and (key, json.dumps(event[key])) not in range_values | type_values:
            assert r.key == str(event[key]).encode()
        else:
            assert r.key and r.key != b"1234"  # the key the event had before the break
        if r.fault is Fault.MISSING_FIELD:
            assert not set(s.required) <= set(event)
        elif r.fault is Fault.OUT_OF_RANGE:
            assert {(f, json.dumps(v)) for f, v in event.items()} & range_values
        elif r.fault is Fault.WRONG_TYPE:
            assert {(f, json.dumps(v)) for f, v in event.items()} & type_values
        else:
            late = datetime.fromisoformat(event[s.contract.event_time])
            assert late <= NOW - timedelta(hours=1)
    if source == "payments":
        assert not any(b'"event_id"' in (r.value or b"") or b'"event_time"' in (r.value or b"")
                       for r in records)


def test_breaks_are_derived_from_the_suite_and_the_types(tmp_path: Path) -> None:
    s = payments_shape(tmp_path)
    assert dict(s.type_breaks) == {"payment_id": 1234, "paid_at": 1700000000,
                                   "amount": "12.50", "method": 1234, "currency": 1234,
                                   "customer_id": 1234, "note": 1234}
    breaks = set(s.range_breaks)
    assert {("amount", -1), ("amount", 100_001)} <= breaks
    assert {f for f, _ in breaks} == {"amount", "method", "currency"}
    assert all(v not in ("card", "bank_transfer", "wallet") for f, v in breaks if f == "method")
    orders = dict(shape("orders").range_breaks)
    assert orders["order_id"] == "" and orders["quantity"] in (0, 10_001)


def test_out_of_range_falls_back_to_a_wrong_type(tmp_path: Path) -> None:
    s = payments_shape(tmp_path)
    bare = EventShape(s.contract, type(s.suite)("none", ()))
    assert bare.range_breaks == ()
    types = {(f, json.dumps(v)) for f, v in bare.type_breaks}
    for r in generate(bare, 500, seed=4, faults=1.0, now=NOW):
        if r.fault is Fault.OUT_OF_RANGE:
            event = json.loads(r.value or b"")
            assert {(f, json.dumps(v)) for f, v in event.items()} & types


def test_poison_pills_on_any_event() -> None:
    rng = random.Random(1)
    event = {"payment_id": "p1", "method": "card"}  # nothing numeric
    for kind in ("nan", "infinity"):
        value = poison_pill(kind, event, rng) or b""
        assert (b"NaN" if kind == "nan" else b"Infinity") in value and b'"payment_id"' in value
    twice = poison_pill("duplicate_key", event, rng, key_field="payment_id") or b""
    assert twice.count(b'"payment_id"') == 2
    oversized = poison_pill("oversized", event, rng, size=10_000) or b""
    assert 9_900 < len(oversized) < 10_100
    assert poison_pill("tombstone", event) is None
    assert set(POISON_PILLS) >= {"garbage", "deep", "invalid_utf8"}
    with pytest.raises(ValueError):
        poison_pill("nope", event)


def test_bad_arguments() -> None:
    with pytest.raises(LakehouseError):
        list(generate(shape("orders"), 1, faults=2.0))


def test_an_encoding_writes_the_values_and_breaks_the_wire_format() -> None:
    header = b"\x00" + (7).to_bytes(4, "big")
    framed = Encoding(lambda event: header + json.dumps(event).encode(), AVRO_FAULTS,
                      b"application/vnd.apache.avro")
    records = list(generate(shape("orders"), 3000, seed=5, faults=0.3, now=NOW,
                            encoding=framed))
    kinds = Counter(r.fault for r in records)
    assert set(kinds) - {None} == set(AVRO_FAULTS)
    assert all(dict(r.headers)["content-type"] == b"application/vnd.apache.avro"
               for r in records)
    for r in records:
        assert r.value is not None
        if r.fault is Fault.BAD_MAGIC_BYTE:
            assert r.value[0] != 0 and r.value[1:5] == header[1:]
        elif r.fault is Fault.UNKNOWN_SCHEMA_ID:
            assert r.value[0] == 0 and int.from_bytes(r.value[1:5], "big") >= 1_000_000
        elif r.fault is Fault.TRUNCATED:
            assert r.value.startswith(header) and len(r.value) >= 5
            with pytest.raises(ValueError):
                json.loads(r.value[5:])
        else:
            assert r.value.startswith(header)
            json.loads(r.value[5:])
