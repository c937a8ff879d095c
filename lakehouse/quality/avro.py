"""Avro sources: the schema a contract implies, and which schema changes break whom (pure).

The contract stays the one place the rules live: an Avro source's schema is derived from
it (``avro_schema``), registered under the topic's subject, and silver reads every
record with the current contract's schema (``reader_schema``), whatever schema the
producer wrote it with. Types map one to one:

========================  ===========================================================
contract                  Avro
========================  ===========================================================
string                    string
integer                   long
number                    double
boolean                   boolean
timestamp                 long, logicalType timestamp-micros
decimal(p,s)              bytes, logicalType decimal, precision p, scale s
required: true            the type itself (never null)
optional                  ["null", type] with default null
optional, default d       [type, "null"] with default d (Avro's encoding of d)
========================  ===========================================================

``breaches`` says which changes a compatibility level forbids, with Avro's own schema
resolution rules (a reader reads a writer's data when every field it needs is written or
has a default, and each written type reads as the reader's, numeric promotions allowed),
so ``lakehouse contract check`` fails before a deploy on what the registry would refuse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.quality.contract import (
    COMPATIBILITY_LEVELS,
    EXTRAS,
    Check,
    Contract,
    Field,
    add_failures,
    future_check,
    unread_checks,
)

WIRE_HEADER = 5
"""Magic byte 0, then the schema id as a 4-byte big-endian integer; the Avro payload
follows."""
DECODED = "_lakehouse_decoded"
"""A field only silver's reader schema has, with default true: it reads true for every
record that decoded, and null where ``from_avro`` (PERMISSIVE) gave up on the payload."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PROMOTIONS = {"int": {"long", "float", "double"}, "long": {"float", "double"},
               "float": {"double"}, "string": {"bytes"}, "bytes": {"string"}}
"""Writer type -> the reader types Avro promotes it to."""


def subject(topic: str) -> str:
    """The subject of a topic's values (Confluent's TopicNameStrategy)."""
    return f"{topic}-value"


def avro_schema(contract: Contract) -> dict[str, Any]:
    """The Avro record schema of the contract's events."""
    return {"type": "record", "name": contract.name, "namespace": "lakehouse.contracts",
            "doc": f"derived from {contract.name}.contract.yaml; edit the contract, not this",
            "fields": [_avro_field(f) for f in contract.fields]}


def reader_schema(contract: Contract) -> dict[str, Any]:
    """The schema silver decodes with: the contract's, plus the ``DECODED`` marker."""
    schema = avro_schema(contract)
    return {**schema, "fields": [*schema["fields"],
                                 {"name": DECODED, "type": "boolean", "default": True}]}


def _avro_field(fld: Field) -> dict[str, Any]:
    base = _avro_type(fld)
    out: dict[str, Any] = {"name": fld.name}
    if fld.description:
        out["doc"] = fld.description
    if fld.required:
        out["type"] = base
        if fld.default is not None:
            out["default"] = _avro_default(fld)
    elif fld.default is None:
        out.update(type=["null", base], default=None)
    else:
        out.update(type=[base, "null"], default=_avro_default(fld))
    return out


def _avro_type(fld: Field) -> Any:
    if fld.decimal:
        precision, scale = fld.decimal
        return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}
    if fld.type == "timestamp":
        return {"type": "long", "logicalType": "timestamp-micros"}
    return {"string": "string", "integer": "long", "number": "double",
            "boolean": "boolean"}[fld.type]


def _avro_default(fld: Field) -> Any:
    """A contract default as Avro's JSON encoding of the underlying type has it: a
    timestamp's microseconds since the epoch, a decimal's unscaled two's-complement bytes
    as a string of code points 0-255."""
    if fld.decimal:
        unscaled = int(Decimal(str(fld.default)).scaleb(fld.decimal[1]))
        size = max(1, (unscaled.bit_length() + 8) // 8)
        return unscaled.to_bytes(size, "big", signed=True).decode("latin-1")
    if fld.type == "timestamp":
        return (datetime.fromisoformat(fld.default) - EPOCH) // timedelta(microseconds=1)
    return fld.default


def to_datum(event: Mapping[str, Any], contract: Contract) -> dict[str, Any]:
    """An event as its JSON twin has it -> the values the Avro schema takes: decimals as
    ``Decimal`` (from the number's text, so 12.5 stays 12.5), timestamps as aware
    ``datetime``; a field the event lacks takes the contract's default, as the JSON parse
    gives it. Keys the contract does not name are left out."""
    out: dict[str, Any] = {}
    for fld in contract.fields:
        value = event.get(fld.name)
        if value is None:
            value = fld.default
        if value is not None and fld.decimal:
            value = Decimal(str(value))
        elif value is not None and fld.type == "timestamp":
            value = datetime.fromisoformat(str(value))
        out[fld.name] = value
    return out


def avro_string(text: str) -> bytes:
    """``text`` as Avro's binary encoding writes a string: its UTF-8 length as a zigzag
    varint, then the bytes (what to look for in a raw Avro value)."""
    data = text.encode("utf-8")
    n, out = len(data) << 1, bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + data


# -- compatibility -------------------------------------------------------------------------

@dataclass(frozen=True)
class Breach:
    """One change a compatibility level forbids."""

    field: str
    rule: str
    """``removed_field`` | ``new_field_without_default`` | ``type_changed``"""
    detail: str

    def describe(self) -> str:
        """One line for humans, naming the field and the rule."""
        return f"field {self.field}: {self.detail} (rule {self.rule})"


def breaches(old: Mapping[str, Any], new: Mapping[str, Any], level: str) -> list[Breach]:
    """What moving from schema ``old`` to ``new`` breaks under ``level``. BACKWARD: the
    new schema must read what the old one wrote (consumers upgrade first); FORWARD: the
    old must read the new's (producers first); FULL: both. The transitive levels are the
    same test against every earlier version: call this once per version."""
    level = level.upper()
    if level not in COMPATIBILITY_LEVELS:
        raise LakehouseError(ErrorCode.CONFIG_BAD_VALUE,
                             f"compatibility {level!r} is not one of {', '.join(COMPATIBILITY_LEVELS)}")
    found: list[Breach] = []
    if level != "NONE" and old.get("name") != new.get("name"):
        found.append(Breach("(record)", "name_changed",
                            f"the record's name changed from {old.get('name')} to "
                            f"{new.get('name')}: Avro matches records by name"))
    if level.startswith(("BACKWARD", "FULL")):
        found += _unreadable(reader=new, writer=old, reader_is_new=True)
    if level.startswith(("FORWARD", "FULL")):
        found += [b for b in _unreadable(reader=old, writer=new, reader_is_new=False)
                  if b not in found]
    return found


def _unreadable(reader: Mapping[str, Any], writer: Mapping[str, Any],
                reader_is_new: bool) -> list[Breach]:
    written = {f["name"]: f for f in writer.get("fields", [])}
    out = []
    for fld in reader.get("fields", []):
        name = fld["name"]
        if name not in written:
            if "default" in fld:
                continue
            if reader_is_new:
                out.append(Breach(name, "new_field_without_default",
                                  f"added as {describe(fld['type'])} with no default: the "
                                  "new schema cannot read events written without it"))
            else:
                out.append(Breach(name, "removed_field",
                                  f"removed, but readers of the old schema need it (it is "
                                  f"{describe(fld['type'])} with no default)"))
            continue
        old_type, new_type = ((written[name]["type"], fld["type"]) if reader_is_new
                              else (fld["type"], written[name]["type"]))
        if not _reads(fld["type"], written[name]["type"]):
            out.append(Breach(name, "type_changed",
                              f"type changed from {describe(old_type)} to "
                              f"{describe(new_type)}"))
    return out


def _reads(reader: Any, writer: Any) -> bool:
    """Whether data written as ``writer`` reads as ``reader`` (Avro schema resolution)."""
    if isinstance(writer, list):
        return all(_reads(reader, branch) for branch in writer)
    if isinstance(reader, list):
        return any(_reads(branch, writer) for branch in reader)
    r, w = _plain(reader), _plain(writer)
    if r.get("logicalType") != w.get("logicalType"):
        return False
    if r.get("logicalType") == "decimal":
        return (r.get("precision"), r.get("scale")) == (w.get("precision"), w.get("scale"))
    if r["type"] == w["type"] == "record":
        return not _unreadable(r, w, reader_is_new=True)
    if r["type"] == w["type"] in ("array", "map"):
        key = "items" if r["type"] == "array" else "values"
        return _reads(r[key], w[key])
    if r["type"] == w["type"] == "enum":
        return set(w["symbols"]) <= set(r["symbols"]) or "default" in r
    return r["type"] == w["type"] or r["type"] in _PROMOTIONS.get(w["type"], set())


def contract_types(schema: Mapping[str, Any]) -> dict[str, str]:
    """Each field of a record schema -> its type in the contract's words (nullability
    aside): what a silver column of that field would hold."""
    out = {}
    for fld in schema.get("fields", []):
        branches = fld["type"] if isinstance(fld["type"], list) else [fld["type"]]
        kept = [b for b in branches if b != "null"]
        if len(kept) == 1:
            out[fld["name"]] = describe(kept[0])
    return out


def _plain(schema: Any) -> dict[str, Any]:
    return {"type": schema} if isinstance(schema, str) else dict(schema)


def describe(schema: Any) -> str:
    """An Avro type in the contract's words: ``decimal(12,2)``, ``string or null``."""
    if isinstance(schema, list):
        return " or ".join(describe(branch) for branch in schema)
    plain = _plain(schema)
    logical = plain.get("logicalType")
    if logical == "decimal":
        return f"decimal({plain.get('precision')},{plain.get('scale')})"
    if logical in ("timestamp-micros", "timestamp-millis"):
        return "timestamp"
    return {"long": "integer", "int": "integer", "double": "number", "float": "number"}.get(
        plain["type"], plain["type"]) if isinstance(plain["type"], str) else json.dumps(plain)


# -- decoding the Confluent wire format (Spark) ----------------------------------------------

def parse_avro(df: DataFrame, contract: Contract, processed_at: str, subject: str,
               writers: Mapping[int, str], reader: str) -> DataFrame:
    """Parse ``df.value`` (Confluent-framed Avro) against the contract, with the output of
    the JSON ``parse``: ``df``'s columns, every contract field typed, ``extras`` (always
    null: Avro has no unknown keys) and the failures.

    ``writers`` maps each schema id of ``subject`` to its schema (the registry's versions);
    every record decodes with the schema its producer wrote it with into ``reader`` (the
    contract's schema plus the ``DECODED`` marker), so an evolved producer does not break
    silver: a field its schema lacks takes the contract's default. A writer schema the
    reader cannot read by Avro's rules (checked here, per id, before any record is) is not
    decoded at all: its records fail with the fields that stand in the way, instead of
    being misread. A value without the wire format's header, an id that is not a version
    of the subject, and a payload that does not decode each fail one rule.
    """
    from pyspark.sql.avro.functions import from_avro

    wanted = json.loads(reader)
    refused = {sid: "; ".join(b.describe() for b in found) for sid, text in writers.items()
               if (found := breaches(json.loads(text), wanted, "BACKWARD"))}
    raw = F.col("value")
    size = F.octet_length(raw)
    unread, failures = unread_checks(contract)
    framed = unread.isNull() & (size >= WIRE_HEADER) & (F.substring(raw, 1, 1) == F.lit(b"\x00"))
    schema_id = F.when(framed, F.conv(F.hex(F.substring(raw, 2, 4)), 16, 10).cast("long"))
    known = schema_id.isin(*writers) if writers else F.lit(False)
    payload = F.expr(f"substring(value, {WIRE_HEADER + 1})")
    options = {"mode": "PERMISSIVE", "avroSchema": reader}
    # One branch per readable writer version; without any, a null of the reader's type.
    record = F.when(F.lit(False), from_avro(payload, reader, options))
    for sid, text in sorted(writers.items()):
        if sid not in refused:
            record = record.when(schema_id == sid, from_avro(payload, text, options))
    why_not = F.lit(None).cast("string")
    for sid, reason in sorted(refused.items()):
        why_not = F.when(schema_id == sid, F.lit(reason)).otherwise(why_not)
    staged = df.select("*", unread.alias("_unread"), framed.alias("_framed"),
                       schema_id.alias("_schema_id"), known.alias("_known"),
                       why_not.alias("_refused"), record.alias("_record"))
    ok = F.col("_known") & F.col(f"_record.{DECODED}").isNotNull()
    ids = ", ".join(str(i) for i in sorted(writers)) or "none"
    first = F.upper(F.hex(F.substring(raw, 1, 1)))
    failures += [
        Check("contract.avro_magic_byte", F.col("_unread").isNull() & ~F.col("_framed"),
              F.when(size < WIRE_HEADER,
                     F.concat(F.lit("value is "), size.cast("string"),
                              F.lit(" bytes, shorter than the Confluent wire format's "
                                    f"{WIRE_HEADER}-byte header")))
              .otherwise(F.concat(F.lit("value starts with byte 0x"), first,
                                  F.lit(", not the Confluent wire format's magic byte 0x00 "
                                        "(was it written without the Avro serializer?)")))),
        Check("contract.avro_unknown_schema_id", F.col("_framed") & ~F.col("_known"),
              F.concat(F.lit("schema id "), F.col("_schema_id").cast("string"),
                       F.lit(f" is not a registered version of subject {subject} "
                             f"(its ids: {ids})"))),
        Check("contract.avro_undecodable", F.col("_known") & ~ok,
              F.when(F.col("_refused").isNotNull(),
                     F.concat(F.lit("schema id "), F.col("_schema_id").cast("string"),
                              F.lit(" cannot be read as the contract's schema: "),
                              F.col("_refused")))
              .otherwise(F.concat(F.lit("payload does not decode as Avro with schema id "),
                                  F.col("_schema_id").cast("string"),
                                  F.lit(" (truncated, or not written with that schema)")))),
    ]
    typed = []
    for fld in contract.fields:
        value = F.when(ok, F.col(f"_record.{fld.name}")).cast(fld.spark_type)
        typed.append(value.alias(fld.name))
        if fld.name == contract.event_time:
            shown = F.concat(F.lit('"'), F.date_format(value, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'"),
                             F.lit('"'))
            failures.append(future_check(contract, value.isNotNull(), value, shown,
                                         F.col(processed_at)))
    staged = staged.select("*", *typed, F.lit(None).cast("string").alias(EXTRAS))
    out = add_failures(staged, failures)
    return out.drop("_unread", "_framed", "_schema_id", "_known", "_refused", "_record")
