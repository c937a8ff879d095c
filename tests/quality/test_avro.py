"""An Avro source's schema, derived from its contract, and the compatibility rules (pure)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import fastavro
import pytest

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.generator import order_event
from lakehouse.quality.avro import (
    DECODED,
    avro_schema,
    breaches,
    describe,
    reader_schema,
    to_datum,
)
from lakehouse.quality.contract import load_contract, parse_contract

ROOT = Path(__file__).resolve().parents[2]
ORDERS = load_contract(ROOT / "expectations" / "orders.contract.yaml")
BASE = """
name: t
key: id
event_time: at
fields:
  id: {type: string, required: true}
  at: {type: timestamp, required: true}
  amount: {type: "decimal(12,2)", required: true}
  n: {type: integer, default: 1}
"""


def schema(extra: str = "", base: str = BASE) -> dict[str, object]:
    return avro_schema(parse_contract(base + extra, "t.contract.yaml"))


def test_the_orders_schema_maps_every_contract_type() -> None:
    fields = {f["name"]: f for f in avro_schema(ORDERS)["fields"]}
    assert fields["event_id"]["type"] == "string" and "default" not in fields["event_id"]
    assert fields["quantity"]["type"] == "long"
    assert fields["event_time"]["type"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert fields["amount"]["type"] == {"type": "bytes", "logicalType": "decimal",
                                        "precision": 12, "scale": 2}
    assert fields["schema_version"] == {"name": "schema_version", "type": ["long", "null"],
                                        "default": 1}
    assert fields["customer_id"]["doc"] == "pseudonymised in silver"
    fastavro.parse_schema(avro_schema(ORDERS))


def test_an_event_round_trips_through_its_schema_exactly() -> None:
    import random
    event = order_event(random.Random(4), datetime(2026, 11, 20, 18, 0, tzinfo=UTC))
    event["amount"] = 12.5
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(avro_schema(ORDERS)),
                               to_datum(event, ORDERS))
    out.seek(0)
    back = fastavro.schemaless_reader(out, fastavro.parse_schema(avro_schema(ORDERS)))
    assert back["amount"] == Decimal("12.50")
    assert back["event_time"] == datetime.fromisoformat(event["event_time"].replace("Z", "+00:00"))
    assert {k: v for k, v in back.items() if k not in ("amount", "event_time")} == {
        k: v for k, v in event.items() if k not in ("amount", "event_time")}


def test_the_reader_schema_reads_old_records_with_defaults_and_marks_them_decoded() -> None:
    old = schema()
    new = schema('  coupon: {type: string, default: "none"}\n')
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(old), {
        "id": "e1", "at": datetime(2026, 11, 20, tzinfo=UTC), "amount": Decimal("1.00"),
        "n": 3})
    out.seek(0)
    reader = reader_schema(parse_contract(BASE + '  coupon: {type: string, default: "none"}\n',
                                          "t.contract.yaml"))
    assert reader["fields"][:-1] == new["fields"]
    back = fastavro.schemaless_reader(out, fastavro.parse_schema(old),
                                      fastavro.parse_schema(reader))
    assert back["coupon"] == "none" and back[DECODED] is True and back["n"] == 3


def test_an_optional_field_with_a_default_is_allowed_under_every_level() -> None:
    new = schema("  coupon: {type: string}\n")
    for level in ("BACKWARD", "FORWARD", "FULL", "FULL_TRANSITIVE"):
        assert breaches(schema(), new, level) == []


def test_a_new_required_field_without_default_breaks_backward() -> None:
    found = breaches(schema(), schema("  coupon: {type: string, required: true}\n"), "BACKWARD")
    assert [(b.field, b.rule) for b in found] == [("coupon", "new_field_without_default")]
    assert "coupon" in found[0].describe() and "new_field_without_default" in found[0].describe()
    assert breaches(schema(), schema("  coupon: {type: string, required: true}\n"),
                    "FORWARD") == []


def test_a_removed_required_field_breaks_forward_and_full_not_backward() -> None:
    without = BASE.replace('  amount: {type: "decimal(12,2)", required: true}\n', "")
    assert breaches(schema(), schema(base=without), "BACKWARD") == []
    for level in ("FORWARD", "FULL"):
        found = breaches(schema(), schema(base=without), level)
        assert [(b.field, b.rule) for b in found] == [("amount", "removed_field")]


def test_a_type_change_breaks_unless_avro_promotes_it() -> None:
    as_number = BASE.replace('"decimal(12,2)"', "number")
    found = breaches(schema(), schema(base=as_number), "FULL")
    assert [(b.field, b.rule) for b in found] == [("amount", "type_changed")]
    assert "from decimal(12,2) to number" in found[0].detail
    wider = BASE.replace("n: {type: integer", "n: {type: number")
    assert breaches(schema(), schema(base=wider), "BACKWARD") == []  # long reads as double
    assert [b.rule for b in breaches(schema(), schema(base=wider), "FORWARD")] == [
        "type_changed"]
    assert breaches(schema(), schema(base=as_number), "NONE") == []


def test_levels_and_type_names() -> None:
    with pytest.raises(LakehouseError) as info:
        breaches(schema(), schema(), "SIDEWAYS")
    assert info.value.code is ErrorCode.CONFIG_BAD_VALUE
    assert describe(["null", "string"]) == "null or string"
    assert describe({"type": "long", "logicalType": "timestamp-micros"}) == "timestamp"


def test_decimal_and_timestamp_defaults_read_back_as_the_contract_says() -> None:
    extra = ('  paid_at: {type: timestamp, default: "2026-01-02T03:04:05.5Z"}\n'
             '  fee: {type: "decimal(6,2)", default: -1.5}\n')
    old, new = schema(), schema(extra)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(old), {
        "id": "e1", "at": datetime(2026, 11, 20, tzinfo=UTC), "amount": Decimal("1.00")})
    out.seek(0)
    back = fastavro.schemaless_reader(out, fastavro.parse_schema(old),
                                      fastavro.parse_schema(new))
    # fastavro hands defaults back in Avro's encoding (Spark's reader converts them; see
    # test_avro_parse): microseconds, and the unscaled value's two's-complement bytes.
    assert back["paid_at"] == (datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
                               - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert int.from_bytes(back["fee"].encode("latin-1"), "big", signed=True) == -150


def test_a_default_of_another_type_is_refused() -> None:
    for extra in ('  n2: {type: integer, default: "x"}\n', "  t2: {type: timestamp, default: 5}\n",
                  '  t3: {type: timestamp, default: "yesterday"}\n',
                  "  b: {type: boolean, default: 1}\n"):
        with pytest.raises(LakehouseError) as info:
            schema(extra)
        assert info.value.code is ErrorCode.CONTRACT_INVALID and "default" in str(info.value)
