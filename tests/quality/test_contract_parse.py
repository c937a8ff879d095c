"""Each contract rule on real Spark: which payloads break it, and what silver keeps."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pyspark.sql import functions as F

from lakehouse.quality.contract import REASONS, RULES, failure_list, load_contract, parse
from tests.conftest import ROOT

PROCESSED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
GOOD = {"event_id": "e1", "event_type": "order_placed", "order_id": "o1", "customer_id": "c1",
        "event_time": "2026-11-22T11:59:00.000Z", "amount": 12.5, "currency": "EUR",
        "quantity": 2, "category": "café", "country": "DE"}


def with_(**changes: Any) -> bytes:
    event = {**GOOD, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


CASES: list[tuple[bytes | None, set[str]]] = [
    (with_(), set()),
    (with_(event_time="2026-11-22T13:59:00+02:00"), set()),  # offsets are fine
    (with_(event_time="2026-11-22T12:04:59Z"), set()),  # within 5 minutes ahead
    (with_(amount=1000000), set()),  # integers are numbers
    (b"{nope", {"contract.malformed_json"}),
    (b"", {"contract.malformed_json"}),
    (b'"just a string"', {"contract.not_an_object"}),
    (b"[1]", {"contract.not_an_object"}),
    (with_(amount=...), {"contract.required:amount"}),
    (with_(customer_id=None), {"contract.required:customer_id"}),
    (with_(amount="12.50"), {"contract.type:amount"}),
    (with_(quantity=2.0), {"contract.type:quantity"}),
    (with_(quantity="2"), {"contract.type:quantity"}),
    (with_(order_id=7), {"contract.type:order_id"}),
    (with_(event_time=1700000000), {"contract.type:event_time"}),
    (with_(event_time="2026-11-22T11:59:00"), {"contract.timestamp:event_time"}),
    (with_(event_time="yesterday"), {"contract.timestamp:event_time"}),
    (with_(event_time="2026-11-22T12:05:01Z"), {"contract.future:event_time"}),
    (with_(amount=12.345), {"contract.decimal:amount"}),
    (with_(amount=1e300), {"contract.decimal:amount"}),
    (with_(amount="x", quantity=None), {"contract.type:amount", "contract.required:quantity"}),
    (with_(deep="@").replace(b'"@"', b"[" * 998 + b"]" * 998), set()),  # 999 levels: fine
]
# Poison pills: each fails one rule, with a reason that names the cause; none fails the
# batch.
POISON: list[tuple[bytes | None, str, str]] = [
    (None, "contract.tombstone", "tombstone"),
    (with_(padding="x" * 1024 * 1024), "contract.too_large", "max_record_bytes (1,048,576)"),
    (with_(category="caf").replace(b"caf", b"caf\xff\xfe"), "contract.invalid_utf8", "UTF-8"),
    (bytes(range(256)), "contract.invalid_utf8", "UTF-8"),
    (with_()[:-1] + b', "event_id": "e2"}', "contract.duplicate_key",
     'key "event_id" appears more than once'),
    (with_()[:-1] + b', "z": 1, "z": 1}', "contract.duplicate_key", 'key "z"'),
    (with_(amount=0).replace(b'"amount": 0', b'"amount": NaN'), "contract.malformed_json",
     "NaN and Infinity are not JSON numbers"),
    (with_(amount=0).replace(b'"amount": 0', b'"amount": -Infinity'),
     "contract.malformed_json", "NaN and Infinity"),
    (with_(deep="@").replace(b'"@"', b"[" * 1000 + b"]" * 1000), "contract.malformed_json",
     "nests deeper than 1,000 levels"),
]
REASONS_OF = {len(CASES) + n: reason for n, (_, _, reason) in enumerate(POISON)}
CASES += [(value, {rule}) for value, rule, _ in POISON]


@pytest.fixture(scope="module")
def parsed(spark):  # type: ignore[no-untyped-def]
    contract = load_contract(ROOT / "expectations" / "orders.contract.yaml")
    df = spark.createDataFrame([(i, v) for i, (v, _) in enumerate(CASES)], "i int, value binary")
    df = df.withColumn("ingested_at", F.lit(PROCESSED))
    out = parse(df, contract, "ingested_at").select(
        "*", failure_list(RULES).alias("rules"), failure_list(REASONS).alias("why"))
    return {r["i"]: r for r in out.collect()}


@pytest.mark.parametrize("case", range(len(CASES)))
def test_each_payload_fails_exactly_its_rules(parsed, case: int) -> None:  # type: ignore[no-untyped-def]
    row = parsed[case]
    assert set(row["rules"]) == CASES[case][1]
    assert len(row["why"]) == len(row["rules"]) and all(row["why"])
    if case in REASONS_OF:
        assert REASONS_OF[case] in row["why"][0]


def test_valid_records_are_typed_and_keep_extras(spark) -> None:  # type: ignore[no-untyped-def]
    contract = load_contract(ROOT / "expectations" / "orders.contract.yaml")
    value = with_(coupon="X", nested={"a": [1]})
    df = spark.createDataFrame([(value,)], "value binary").withColumn(
        "ingested_at", F.lit(PROCESSED))
    row = parse(df, contract, "ingested_at").collect()[0]
    assert row["amount"] == Decimal("12.50") and row["quantity"] == 2
    assert row["schema_version"] == 1  # the contract's default
    assert row["category"] == "café"
    assert json.loads(row["extras"]) == {"coupon": "X", "nested": {"a": [1]}}
    assert row[RULES] is None
