"""Realistic synthetic events for the ``orders`` and ``clickstream`` sources (pure).

``generate(source, count, seed, faults)`` returns Kafka records (key, value bytes,
headers) deterministically for a seed. With ``faults`` a share of the records is one of:
an exact redelivery of an earlier event, malformed JSON, a missing required field, an
out-of-range value, a wrong type, a late event (event time hours in the past), or a poison
pill (``POISON``: binary garbage, JSON nested 1,000 levels deep, invalid UTF-8, NaN or
Infinity, a duplicate key, a tombstone). ``poison_pill`` makes each pill on demand, and
also the one the random mix leaves out: a value of several MB (``oversized``), which would
dominate a benchmark's bytes.

Values are JSON unless an ``Encoding`` says otherwise: ``avro_encoding`` (in
``lakehouse.schemas``) writes the Confluent wire format. An Avro serializer cannot write a
malformed value, a missing required field or a wrong type, so on an Avro topic the faults
are in the framing and the payload instead: a wrong magic byte, a schema id the registry
does not have, a truncated payload (``AVRO_FAULTS``).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from lakehouse.errors import ErrorCode, LakehouseError


class Fault(StrEnum):
    """Kinds of bad input the generator mixes in."""

    DUPLICATE = "duplicate"
    MALFORMED = "malformed"
    MISSING_FIELD = "missing_field"
    OUT_OF_RANGE = "out_of_range"
    WRONG_TYPE = "wrong_type"
    LATE = "late"
    POISON = "poison"
    BAD_MAGIC_BYTE = "bad_magic_byte"
    UNKNOWN_SCHEMA_ID = "unknown_schema_id"
    TRUNCATED = "truncated"


JSON_FAULTS = (Fault.DUPLICATE, Fault.MALFORMED, Fault.MISSING_FIELD, Fault.OUT_OF_RANGE,
               Fault.WRONG_TYPE, Fault.LATE, Fault.POISON)
AVRO_FAULTS = (Fault.DUPLICATE, Fault.OUT_OF_RANGE, Fault.LATE, Fault.BAD_MAGIC_BYTE,
               Fault.UNKNOWN_SCHEMA_ID, Fault.TRUNCATED)


POISON_PILLS = ("garbage", "deep", "invalid_utf8", "nan", "infinity", "duplicate_key",
                "tombstone", "oversized")
"""Kinds of hostile value ``poison_pill`` makes; all but ``oversized`` are in the mix."""


@dataclass(frozen=True)
class Record:
    """One Kafka record to produce."""

    key: bytes | None
    value: bytes | None
    """None is a tombstone."""
    headers: tuple[tuple[str, bytes], ...]
    fault: Fault | None = None


CATEGORIES = ("electronics", "books", "garden", "toys", "grocery", "fashion", "sports",
              "beauty", "café & küche", "文具")
COUNTRIES = ("US", "GB", "DE", "FR", "NL", "ES", "IT", "SE", "JP", "BR", "IN", "CA")
CURRENCIES = {"US": "USD", "GB": "GBP", "JP": "JPY", "BR": "BRL", "IN": "INR", "CA": "CAD",
              "SE": "SEK"}
ORDER_EVENTS = (("order_placed", 0.45), ("order_paid", 0.25), ("order_shipped", 0.18),
                ("order_cancelled", 0.07), ("order_refunded", 0.05))
CLICK_EVENTS = (("page_view", 0.55), ("click", 0.25), ("add_to_cart", 0.1), ("search", 0.07),
                ("checkout", 0.03))
PAGES = ("/", "/search", "/c/electronics", "/c/books", "/p/{id}", "/cart", "/checkout")
DEVICES = ("desktop", "mobile", "tablet")


@dataclass(frozen=True)
class Encoding:
    """How events become Kafka values, and which faults that format can carry."""

    encode: Callable[[dict[str, Any]], bytes]
    faults: tuple[Fault, ...]
    content_type: bytes


def _weighted(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([k for k, _ in table], weights=[w for _, w in table])[0]


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order_event(rng: random.Random, now: datetime) -> dict[str, Any]:
    """One valid order event."""
    country = rng.choice(COUNTRIES)
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_type": _weighted(rng, ORDER_EVENTS),
        "order_id": f"o-{rng.randrange(1, 10**7):07d}",
        "customer_id": f"c-{rng.randrange(1, 10**6):06d}",
        "event_time": _iso(now - timedelta(seconds=rng.uniform(0, 120))),
        "amount": round(rng.lognormvariate(3.5, 1.0), 2),
        "currency": CURRENCIES.get(country, "EUR"),
        "quantity": rng.randint(1, 5),
        "category": rng.choice(CATEGORIES),
        "country": country,
        "schema_version": 1,
    }


def click_event(rng: random.Random, now: datetime) -> dict[str, Any]:
    """One valid clickstream event."""
    user = rng.randrange(1, 600)
    page = rng.choice(PAGES).format(id=rng.randrange(1, 5000))
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_type": _weighted(rng, CLICK_EVENTS),
        "user_id": f"u-{user:05d}",
        "session_id": f"s-{user:05d}-{rng.randrange(0, 3)}",
        "url": f"https://shop.example.com{page}",
        "referrer": rng.choice(["", "https://www.google.com/", "https://news.example.org/"]),
        "device": rng.choice(DEVICES),
        "country": rng.choice(COUNTRIES),
        "event_time": _iso(now - timedelta(seconds=rng.uniform(0, 600))),
        "schema_version": 1,
    }


@dataclass(frozen=True)
class SourceShape:
    """How to make one source's events and which fields the faults may break."""

    make: Callable[[random.Random, datetime], dict[str, Any]]
    key_field: str
    required: tuple[str, ...]
    range_breaks: tuple[tuple[str, Any], ...]
    type_breaks: tuple[tuple[str, Any], ...]


SHAPES: dict[str, SourceShape] = {
    "orders": SourceShape(
        order_event, "order_id",
        ("event_id", "event_type", "order_id", "customer_id", "event_time", "amount",
         "currency", "quantity", "category", "country"),
        (("amount", -5.0), ("amount", 2_000_000.0), ("quantity", 0), ("quantity", 20_000),
         ("currency", "usd"), ("country", "Germany")),
        (("amount", "12.50"), ("quantity", 2.5), ("customer_id", 1234))),
    "clickstream": SourceShape(
        click_event, "user_id",
        ("event_id", "event_type", "user_id", "session_id", "url", "event_time"),
        (("event_type", "Page View"), ("url", "not a url")),
        (("user_id", 42), ("event_time", 1700000000))),
}


def generate(source: str, count: int, seed: int = 0, faults: float = 0.0,
             now: datetime | None = None, encoding: Encoding | None = None) -> Iterator[Record]:
    """``count`` records for ``source``; a ``faults`` share of them broken on purpose.
    ``encoding``: how values are written (default JSON)."""
    if source not in SHAPES:
        raise LakehouseError(ErrorCode.NO_GENERATOR,
                             f"no generator for source {source!r} (have: {', '.join(SHAPES)})")
    if not 0.0 <= faults <= 1.0:
        raise LakehouseError(ErrorCode.CONFIG_BAD_VALUE, "--faults must be between 0 and 1")
    shape = SHAPES[source]
    encoding = encoding or JSON
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    history: list[Record] = []
    headers = (("content-type", encoding.content_type), ("producer", b"lakehouse-generator"))
    for _ in range(count):
        if faults and rng.random() < faults:
            fault = rng.choice(encoding.faults)
            if fault is Fault.DUPLICATE and history:
                original = rng.choice(history[-500:])
                yield Record(original.key, original.value, original.headers, Fault.DUPLICATE)
                continue
            if fault is Fault.DUPLICATE:
                fault = encoding.faults[1]
            event = shape.make(rng, now)
            yield _broken(rng, shape, event, fault, headers, now, encoding.encode)
            continue
        event = shape.make(rng, now)
        record = Record(str(event[shape.key_field]).encode(), encoding.encode(event), headers)
        history.append(record)
        yield record


def _broken(rng: random.Random, shape: SourceShape, event: dict[str, Any], fault: Fault,
            headers: tuple[tuple[str, bytes], ...], now: datetime,
            encode: Callable[[dict[str, Any]], bytes]) -> Record:
    key = str(event[shape.key_field]).encode()
    if fault in (Fault.BAD_MAGIC_BYTE, Fault.UNKNOWN_SCHEMA_ID, Fault.TRUNCATED):
        return Record(key, wire_fault(fault, encode(event), rng), headers, fault)
    if fault is Fault.MALFORMED:
        text = _dump(event)
        value = rng.choice([text[: len(text) // 2], b"not json at all", b"[1, 2, 3]", b""])
        return Record(key, value, headers, fault)
    if fault is Fault.POISON:
        pill = rng.choice(POISON_PILLS[:-1])
        return Record(key, poison_pill(pill, event, rng), headers, fault)
    if fault is Fault.MISSING_FIELD:
        event.pop(rng.choice(shape.required))
    elif fault is Fault.OUT_OF_RANGE:
        field, value = rng.choice(shape.range_breaks)
        event[field] = value
    elif fault is Fault.WRONG_TYPE:
        field, value = rng.choice(shape.type_breaks)
        event[field] = value
    elif fault is Fault.LATE:
        event["event_time"] = _iso(now - timedelta(hours=rng.uniform(1, 30)))
    return Record(key, encode(event), headers, fault)


def _dump(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


JSON = Encoding(_dump, JSON_FAULTS, b"application/json")


def wire_fault(fault: Fault, value: bytes, rng: random.Random) -> bytes:
    """A Confluent-framed value (magic byte 0, 4-byte schema id, payload) broken one way."""
    if fault is Fault.BAD_MAGIC_BYTE:
        return bytes([rng.randint(1, 255)]) + value[1:]
    if fault is Fault.UNKNOWN_SCHEMA_ID:
        return b"\x00" + rng.randint(1_000_000, 2**31 - 1).to_bytes(4, "big") + value[5:]
    if fault is Fault.TRUNCATED:
        return value[:rng.randint(5, len(value) - 1)]
    raise ValueError(f"{fault} is not a wire-format fault")


def poison_pill(kind: str, event: dict[str, Any], rng: random.Random | None = None,
                size: int = 3 * 1024 * 1024) -> bytes | None:
    """A hostile value made from ``event`` (see ``POISON_PILLS``); ``size`` is the length
    of an ``oversized`` one."""
    rng = rng or random.Random(0)
    text = _dump(event)
    if kind == "garbage":
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    if kind == "deep":
        return text[:-1] + b',"nested":' + b"[" * 1000 + b"]" * 1000 + b"}"
    if kind == "invalid_utf8":
        return text[:-1] + b',"note":"caf\xe9 \xff"}'
    if kind in ("nan", "infinity"):
        number = next(k for k, v in event.items() if isinstance(v, (int, float))
                      and not isinstance(v, bool))
        literal = b"NaN" if kind == "nan" else b"Infinity"
        return _dump({**event, number: "@"}).replace(b'"@"', literal)
    if kind == "duplicate_key":
        return text[:-1] + b',"event_id":"' + str(uuid.UUID(int=rng.getrandbits(128))).encode() \
            + b'"}'
    if kind == "tombstone":
        return None
    if kind == "oversized":
        return text[:-1] + b',"padding":"' + b"x" * max(0, size - len(text) - 14) + b'"}'
    raise ValueError(f"unknown poison pill {kind!r} (have: {', '.join(POISON_PILLS)})")
