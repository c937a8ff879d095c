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
optional, default d       [type, "null"] with default d
========================  ===========================================================

``breaches`` says which changes a compatibility level forbids, with Avro's own schema
resolution rules (a reader reads a writer's data when every field it needs is written or
has a default, and each written type reads as the reader's, numeric promotions allowed),
so ``lakehouse contract check`` fails before a deploy on what the registry would refuse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from lakehouse.config import COMPATIBILITY_LEVELS
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.quality.contract import DECODED, Contract, Field

_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
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
            out["default"] = fld.default
    elif fld.default is None:
        out.update(type=["null", base], default=None)
    else:
        out.update(type=[base, "null"], default=fld.default)
    return out


def _avro_type(fld: Field) -> Any:
    match = _DECIMAL.match(fld.type)
    if match:
        if fld.default is not None:
            raise _no_default(fld)
        return {"type": "bytes", "logicalType": "decimal", "precision": int(match.group(1)),
                "scale": int(match.group(2))}
    if fld.type == "timestamp":
        if fld.default is not None:
            raise _no_default(fld)
        return {"type": "long", "logicalType": "timestamp-micros"}
    return {"string": "string", "integer": "long", "number": "double",
            "boolean": "boolean"}[fld.type]


def _no_default(fld: Field) -> LakehouseError:
    return LakehouseError(
        ErrorCode.CONTRACT_INVALID,
        f"field {fld.name}: an Avro source's {fld.type} field cannot have a default",
        hint="drop the default (the field then reads null where a record lacks it)")


def to_datum(event: Mapping[str, Any], contract: Contract) -> dict[str, Any]:
    """An event as its JSON twin has it -> the values the Avro schema takes: decimals as
    ``Decimal`` (from the number's text, so 12.5 stays 12.5), timestamps as aware
    ``datetime``. Keys the contract does not name are left out."""
    out: dict[str, Any] = {}
    for fld in contract.fields:
        if fld.name not in event:
            continue
        value = event[fld.name]
        if value is not None and _DECIMAL.match(fld.type):
            value = Decimal(str(value))
        elif value is not None and fld.type == "timestamp":
            value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        out[fld.name] = value
    return out


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
