"""The synthetic event generator: deterministic, realistic, faults as asked."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.generator import AVRO_FAULTS, JSON_FAULTS, SHAPES, Encoding, Fault, generate

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize("source", sorted(SHAPES))
def test_deterministic_per_seed(source: str) -> None:
    a = list(generate(source, 200, seed=7, faults=0.2, now=NOW))
    b = list(generate(source, 200, seed=7, faults=0.2, now=NOW))
    c = list(generate(source, 200, seed=8, faults=0.2, now=NOW))
    assert a == b
    assert a != c


@pytest.mark.parametrize("source", sorted(SHAPES))
def test_clean_events_are_complete_json(source: str) -> None:
    for record in generate(source, 300, seed=1, now=NOW):
        event = json.loads(record.value)
        assert set(SHAPES[source].required) <= set(event)
        assert record.key == str(event[SHAPES[source].key_field]).encode()
        assert record.fault is None
        assert dict(record.headers)["content-type"] == b"application/json"


def test_orders_values_in_contract() -> None:
    events = [json.loads(r.value) for r in generate("orders", 500, seed=3, now=NOW)]
    assert all(0 <= e["amount"] <= 1_000_000 and 1 <= e["quantity"] <= 10_000 for e in events)
    assert {e["event_type"] for e in events} == {
        "order_placed", "order_paid", "order_shipped", "order_cancelled", "order_refunded"}
    assert len({e["event_id"] for e in events}) == 500


def test_faults_mixed_in() -> None:
    records = list(generate("orders", 3000, seed=5, faults=0.3, now=NOW))
    kinds = Counter(r.fault for r in records)
    assert 700 < sum(n for k, n in kinds.items() if k is not None) < 1100
    assert set(kinds) - {None} == set(JSON_FAULTS)
    clean_values = {r.value for r in records if r.fault is None}
    assert all(r.value in clean_values for r in records if r.fault is Fault.DUPLICATE)
    for r in records:
        if r.fault is Fault.MISSING_FIELD:
            assert not set(SHAPES["orders"].required) <= set(json.loads(r.value))


def test_bad_arguments() -> None:
    with pytest.raises(LakehouseError) as info:
        list(generate("payments", 1))
    assert info.value.code is ErrorCode.NO_GENERATOR
    with pytest.raises(LakehouseError):
        list(generate("orders", 1, faults=2.0))


def test_an_encoding_writes_the_values_and_breaks_the_wire_format() -> None:
    header = b"\x00" + (7).to_bytes(4, "big")
    framed = Encoding(lambda event: header + json.dumps(event).encode(), AVRO_FAULTS,
                      b"application/vnd.apache.avro")
    records = list(generate("orders", 3000, seed=5, faults=0.3, now=NOW, encoding=framed))
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
