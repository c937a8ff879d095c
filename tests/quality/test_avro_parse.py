"""Confluent-framed Avro parsed against the contract on real Spark: every writer version
decodes into the reader's shape, and each broken frame fails exactly one rule."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from pyspark.sql import functions as F

from lakehouse.generator import Fault, wire_fault
from lakehouse.quality.avro import avro_schema, parse_avro, reader_schema, to_datum
from lakehouse.quality.contract import (
    REASONS,
    RULES,
    failure_list,
    parse,
    parse_contract,
)
from tests.conftest import ROOT

PROCESSED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ORDERS = (ROOT / "expectations" / "orders.contract.yaml").read_text()
V1 = parse_contract(ORDERS, "orders.contract.yaml")
V2 = parse_contract(ORDERS + '  coupon: {type: string, default: "none"}\n'
                    '  fee: {type: "decimal(6,2)", default: -1.5}\n'
                    '  paid_at: {type: timestamp, default: "2026-01-02T03:04:05.5Z"}\n',
                    "orders.contract.yaml")
GOOD = {"event_id": "e1", "event_type": "order_placed", "order_id": "o1", "customer_id": "c1",
        "event_time": "2026-11-22T11:59:00.000Z", "amount": 12.5, "currency": "EUR",
        "quantity": 2, "category": "café", "country": "DE", "schema_version": 1}
MILLIS = json.loads(json.dumps(avro_schema(V1)).replace("timestamp-micros", "timestamp-millis"))
WRITERS = {11: json.dumps(avro_schema(V1)), 12: json.dumps(avro_schema(V2)),
           13: json.dumps(MILLIS)}


def framed(schema_id: int, event: dict[str, Any], contract: Any,
           schema: dict[str, Any] | None = None) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema or avro_schema(contract)),
                               to_datum(event, contract))
    return b"\x00" + schema_id.to_bytes(4, "big") + out.getvalue()


RNG = random.Random(0)
CASES: list[tuple[bytes | None, set[str], str]] = [
    (framed(11, GOOD, V1), set(), ""),
    (framed(12, {**GOOD, "event_id": "e2", "coupon": "X"}, V2), set(), ""),
    (framed(11, {**GOOD, "event_time": "2026-11-22T12:05:01Z"}, V1),
     {"contract.future:event_time"}, "is more than 300s after"),
    (None, {"contract.tombstone"}, "tombstone"),
    (json.dumps(GOOD).encode(), {"contract.avro_magic_byte"}, "byte 0x7B"),
    (b"\x00\x01", {"contract.avro_magic_byte"}, "2 bytes, shorter"),
    (wire_fault(Fault.BAD_MAGIC_BYTE, framed(11, GOOD, V1), RNG), {"contract.avro_magic_byte"},
     "not the Confluent wire format's magic byte"),
    (wire_fault(Fault.UNKNOWN_SCHEMA_ID, framed(11, GOOD, V1), RNG),
     {"contract.avro_unknown_schema_id"}, "is not a registered version of subject s-value "
                                          "(its ids: 11, 12, 13)"),
    (framed(11, GOOD, V1)[:-3], {"contract.avro_undecodable"}, "schema id 11"),
    (b"\x00" + (12).to_bytes(4, "big"), {"contract.avro_undecodable"}, "schema id 12"),
    # A producer's timestamp-millis would read as micros (1970 dates): not decoded at all.
    (framed(13, GOOD, V1, MILLIS), {"contract.avro_undecodable"},
     "schema id 13 cannot be read as the contract's schema: field event_time: type changed"),
]


@pytest.fixture(scope="module")
def parsed(spark):  # type: ignore[no-untyped-def]
    df = spark.createDataFrame([(i, v) for i, (v, _, _) in enumerate(CASES)],
                               "i int, value binary").withColumn("ingested_at", F.lit(PROCESSED))
    out = parse_avro(df, V2, "ingested_at", "s-value", WRITERS,
                     json.dumps(reader_schema(V2)))
    out = out.select("*", failure_list(RULES).alias("rules"), failure_list(REASONS).alias("why"))
    return {r["i"]: r for r in out.collect()}


@pytest.mark.parametrize("case", range(len(CASES)))
def test_each_frame_fails_exactly_its_rules(parsed, case: int) -> None:  # type: ignore[no-untyped-def]
    row = parsed[case]
    assert set(row["rules"]) == CASES[case][1]
    assert len(row["why"]) == len(row["rules"])
    if CASES[case][2]:
        assert CASES[case][2] in row["why"][0]


def test_both_writer_versions_read_as_the_json_twin_does(spark, parsed) -> None:  # type: ignore[no-untyped-def]
    twins = spark.createDataFrame(
        [(0, json.dumps(GOOD).encode()), (1, json.dumps({**GOOD, "event_id": "e2",
                                                         "coupon": "X"}).encode())],
        "i int, value binary").withColumn("ingested_at", F.lit(PROCESSED))
    as_json = {r["i"]: r.asDict() for r in parse(twins, V2, "ingested_at").collect()}
    for i in (0, 1):
        avro = {k: v for k, v in parsed[i].asDict().items() if k in as_json[i]}
        assert avro == {**as_json[i], "value": avro["value"]}
    assert parsed[0]["coupon"] == "none" and parsed[1]["coupon"] == "X"
    assert parsed[0]["fee"] == Decimal("-1.50")  # v2's defaults, read by Spark's Avro
    assert parsed[0]["paid_at"] == datetime(2026, 1, 2, 3, 4, 5, 500000)  # UTC, naive
    assert parsed[1]["fee"] == Decimal("-1.50")
    assert parsed[0]["amount"] == Decimal("12.50") and parsed[0]["extras"] is None
    assert parsed[4]["event_id"] is None  # a rejected record carries no typed values


def test_a_subject_without_versions_rejects_every_frame(spark) -> None:  # type: ignore[no-untyped-def]
    df = spark.createDataFrame([(framed(11, GOOD, V1),)], "value binary").withColumn(
        "ingested_at", F.lit(PROCESSED))
    row = parse_avro(df, V1, "ingested_at", "s-value", {},
                     json.dumps(reader_schema(V1))).collect()[0]
    assert row[RULES] == "contract.avro_unknown_schema_id" and row["event_id"] is None
