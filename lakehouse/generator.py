"""Synthetic events for any source, derived from its contract and its suite (pure).

``generate(shape, count, seed, faults)`` returns Kafka records (key, value bytes, headers)
deterministically for a seed. An ``EventShape`` is a source's contract
(``lakehouse.quality.contract``) and GX suite (``lakehouse.quality.rules``): a valid event
has every required field (optional ones most of the time), a fresh key, an event time in
the last two minutes, and every other field a value of its type that passes every suite
rule on it (a member of an in-set, a number inside a between, a string a regex generates,
``rstr``). Two sources have a hand-written maker besides (``REALISTIC``: currency follows
country, lognormal amounts, weighted event types, session ids that embed the user), the
realism a contract cannot express; it makes their valid events.

With ``faults`` a share of the records is one of: an exact redelivery of an earlier event,
malformed JSON, a missing required field, an out-of-range value (one that breaks a suite
rule), a wrong JSON type, a late event (event time hours in the past), or a poison pill
(``POISON``: binary garbage, JSON nested 1,000 levels deep, invalid UTF-8, NaN or
Infinity, a duplicate key, a tombstone). The faults always come from the contract and the
suite, on the contract's own field names. ``poison_pill`` makes each pill on demand, and
also the one the random mix leaves out: a value of several MB (``oversized``), which would
dominate a benchmark's bytes.

Values are JSON unless an ``Encoding`` says otherwise: ``avro_encoding`` (in
``lakehouse.schemas``) writes the Confluent wire format. An Avro serializer cannot write a
malformed value, a missing required field or a wrong type, so on an Avro topic the faults
are in the framing and the payload instead: a wrong magic byte, a schema id the registry
does not have, a truncated payload (``AVRO_FAULTS``).

Only ``load_shape`` reads files.
"""


from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.quality.contract import Contract, load_contract
from lakehouse.quality.rules import NOT_NULL, Rule, Suite, load_suite
from lakehouse.quality.samples import breaking_values, iso, passes, valid_value, wrong_type


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


@dataclass(frozen=True)
class Encoding:
    """How events become Kafka values, and which faults that format can carry."""

    encode: Callable[[dict[str, Any]], bytes]
    faults: tuple[Fault, ...]
    content_type: bytes


# -- hand-written makers: the realism a contract cannot express ------------------------------

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


def _weighted(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([k for k, _ in table], weights=[w for _, w in table])[0]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def order_event(rng: random.Random, now: datetime) -> dict[str, Any]:
    """One valid order event."""
    country = rng.choice(COUNTRIES)
    return {
        "event_id": _uuid(rng),
        "event_type": _weighted(rng, ORDER_EVENTS),
        "order_id": f"o-{rng.randrange(1, 10**7):07d}",
        "customer_id": f"c-{rng.randrange(1, 10**6):06d}",
        "event_time": iso(now - timedelta(seconds=rng.uniform(0, 120))),
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
        "event_id": _uuid(rng),
        "event_type": _weighted(rng, CLICK_EVENTS),
        "user_id": f"u-{user:05d}",
        "session_id": f"s-{user:05d}-{rng.randrange(0, 3)}",
        "url": f"https://shop.example.com{page}",
        "referrer": rng.choice(["", "https://www.google.com/", "https://news.example.org/"]),
        "device": rng.choice(DEVICES),
        "country": rng.choice(COUNTRIES),
        "event_time": iso(now - timedelta(seconds=rng.uniform(0, 600))),
        "schema_version": 1,
    }


Maker = Callable[[random.Random, datetime], dict[str, Any]]
REALISTIC: dict[str, Maker] = {"orders": order_event, "clickstream": click_event}
"""Hand-written makers of valid events, by contract name."""


# -- the shape of one source's events --------------------------------------------------------


@dataclass(frozen=True)
class EventShape:
    """How to make one source's events: its contract, its suite, and optionally a
    hand-written maker."""

    contract: Contract
    suite: Suite
    make: Maker | None = None
    """Makes valid events (``REALISTIC``); None: derived from the contract and suite."""

    @property
    def key_field(self) -> str:
        """The field whose value is the Kafka key (the contract's key)."""
        return self.contract.key

    @cached_property
    def required(self) -> tuple[str, ...]:
        """The contract's required fields."""
        return tuple(f.name for f in self.contract.fields if f.required)

    @cached_property
    def rules_of(self) -> dict[str, tuple[Rule, ...]]:
        """The suite's rules by the field they check."""
        return {f.name: tuple(r for r in self.suite.rules if r.column == f.name)
                for f in self.contract.fields}

    @cached_property
    def range_breaks(self) -> tuple[tuple[str, Any], ...]:
        """``(field, value)``: a value of the field's JSON type that breaks a suite rule on
        it (and no contract rule)."""
        fields = {f.name: f for f in self.contract.fields}
        return tuple((rule.column, value) for rule in self.suite.rules
                     if rule.column in fields
                     for value in breaking_values(rule, fields[rule.column]))

    @cached_property
    def type_breaks(self) -> tuple[tuple[str, Any], ...]:
        """``(field, value)``: a value of the wrong JSON type for each field."""
        return tuple((f.name, wrong_type(f)) for f in self.contract.fields)


def event_shape(contract: Contract, suite: Suite) -> EventShape:
    """The shape of a source's events, with its hand-written maker if it has one."""
    return EventShape(contract, suite, REALISTIC.get(contract.name))


def contract_event(shape: EventShape, rng: random.Random, now: datetime,
                   serial: int = 0) -> dict[str, Any]:
    """One valid event derived from the contract and suite: the key a fresh uuid4 (or
    ``serial`` for an integer key), the event time in the two minutes before ``now``, every
    other field its default or a value that passes the suite's rules on it; optional
    fields present 9 times in 10 (always if a rule says not null)."""
    contract = shape.contract
    event: dict[str, Any] = {}
    for fld in contract.fields:
        rules = shape.rules_of[fld.name]
        if not (fld.required or fld.name in (contract.key, contract.event_time)
                or any(r.type == NOT_NULL for r in rules)) and rng.random() >= 0.9:
            continue
        if fld.name == contract.event_time:
            event[fld.name] = iso(now - timedelta(seconds=rng.uniform(0, 120)))
        elif fld.name == contract.key and fld.type in ("string", "integer"):
            key: Any = _uuid(rng) if fld.type == "string" else serial
            event[fld.name] = key if all(passes(r, key) for r in rules) \
                else valid_value(fld, rules, rng, now)
        elif fld.default is not None and all(passes(r, fld.default) for r in rules):
            event[fld.name] = fld.default
        else:
            event[fld.name] = valid_value(fld, rules, rng, now)
    return event


def generate(shape: EventShape, count: int, seed: int = 0, faults: float = 0.0,
             now: datetime | None = None, encoding: Encoding | None = None) -> Iterator[Record]:
    """``count`` records of ``shape``'s source; a ``faults`` share of them broken on
    purpose. ``encoding``: how values are written (default JSON)."""
    if not 0.0 <= faults <= 1.0:
        raise LakehouseError(ErrorCode.CONFIG_BAD_VALUE, "--faults must be between 0 and 1")
    encoding = encoding or JSON
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    history: list[Record] = []
    headers = (("content-type", encoding.content_type), ("producer", b"lakehouse-generator"))
    key_field = shape.key_field
    for n in range(count):
        fault = rng.choice(encoding.faults) if faults and rng.random() < faults else None
        if fault is Fault.DUPLICATE and history:
            yield replace(rng.choice(history[-500:]), fault=fault)
            continue
        if fault is Fault.DUPLICATE:
            fault = encoding.faults[1]
        event = shape.make(rng, now) if shape.make else contract_event(shape, rng, now, n)
        if fault is not None:
            yield _broken(rng, shape, event, fault, headers, now, encoding.encode)
            continue
        record = Record(str(event[key_field]).encode(), encoding.encode(event), headers)
        history.append(record)
        yield record


def _broken(rng: random.Random, shape: EventShape, event: dict[str, Any], fault: Fault,
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
        return Record(key, poison_pill(pill, event, rng, key_field=shape.key_field), headers,
                      fault)
    present = [f for f in shape.required if f in event]
    if fault is Fault.MISSING_FIELD and present:
        event.pop(rng.choice(present))
    elif fault is Fault.OUT_OF_RANGE and shape.range_breaks:
        field, value = rng.choice(shape.range_breaks)
        event[field] = value
    elif fault in (Fault.MISSING_FIELD, Fault.OUT_OF_RANGE, Fault.WRONG_TYPE):
        # Nothing required to drop, or nothing in the suite to break: a wrong type.
        field, value = rng.choice(shape.type_breaks)
        event[field] = value
    elif fault is Fault.LATE:
        event[shape.contract.event_time] = iso(now - timedelta(hours=rng.uniform(1, 30)))
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


def _plus(event: dict[str, Any], name: str, value: bytes) -> bytes:
    """The event's JSON with one key more: ``name`` (or a variant of it the event does not
    have) holding the raw JSON ``value``."""
    while name in event:
        name += "_"
    return _dump(event)[:-1] + b"," + json.dumps(name).encode() + b":" + value + b"}"


def poison_pill(kind: str, event: dict[str, Any], rng: random.Random | None = None,
                size: int = 3 * 1024 * 1024, key_field: str = "event_id") -> bytes | None:
    """A hostile value made from ``event`` (see ``POISON_PILLS``); ``size`` is the length
    of an ``oversized`` one, ``key_field`` the key a ``duplicate_key`` one repeats."""
    rng = rng or random.Random(0)
    text = _dump(event)
    if kind == "garbage":
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    if kind == "deep":
        return _plus(event, "nested", b"[" * 1000 + b"]" * 1000)
    if kind == "invalid_utf8":
        return _plus(event, "note", b'"caf\xe9 \xff"')
    if kind in ("nan", "infinity"):
        number = next((k for k, v in event.items() if isinstance(v, int | float)
                       and not isinstance(v, bool)), None)
        literal = b"NaN" if kind == "nan" else b"Infinity"
        if number is None:  # no numeric field: a new key holds it
            return _plus(event, "number", literal)
        return _dump({**event, number: "@"}).replace(b'"@"', literal)
    if kind == "duplicate_key":
        return text[:-1] + b"," + json.dumps(key_field).encode() + b':"' \
            + str(uuid.UUID(int=rng.getrandbits(128))).encode() + b'"}'
    if kind == "tombstone":
        return None
    if kind == "oversized":
        return _plus(event, "padding", b'"' + b"x" * max(0, size - len(text) - 14) + b'"')
    raise ValueError(f"unknown poison pill {kind!r} (have: {', '.join(POISON_PILLS)})")


# -- the one reader --------------------------------------------------------------------------


def load_shape(expectations_dir: Path, source: str) -> EventShape:
    """The shape of ``source``'s events from ``<dir>/<source>.contract.yaml`` and
    ``<dir>/<source>.suite.json``."""
    contract = load_contract(Path(expectations_dir) / f"{source}.contract.yaml")
    suite = load_suite(Path(expectations_dir) / f"{source}.suite.json",
                       tuple(f.name for f in contract.fields))
    return event_shape(contract, suite)
