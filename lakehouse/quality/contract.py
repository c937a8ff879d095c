"""Data contracts: the fields, JSON types and required-ness of one source's events.

A contract is a small YAML file (``expectations/<name>.contract.yaml``), written once; the
Spark schema of the silver table and the parsing of raw Kafka values are derived from
it. Types are strict: a JSON string ``"12.50"`` where the contract says number is a
violation, never coerced. Keys the contract does not name are kept, as one JSON string
in the ``extras`` column.

Parsing is a pure DataFrame transformation (``parse``): raw bytes in, typed columns plus
``_failed_rules`` / ``_reasons`` (every contract rule the record broke, with a readable
reason) out. It uses Spark's VARIANT type, so a record's JSON is parsed once, in the JVM.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.config import FORMATS
from lakehouse.errors import ErrorCode, LakehouseError

RULES = "_failed_rules"
REASONS = "_reasons"
"""Every rule a record failed, and why: strings joined by ``SEP`` (null if none). Plain
strings, not arrays of structs: Spark runs higher-order functions (filter, transform)
interpreted, and they cost more than the JSON parse itself."""
SEP = "\x1f"
EXTRAS = "extras"
_VARIANT = "_json"
_VALUES = "_values"
"""The contract fields as ``from_json`` reads them (a struct), while the record is parsed."""

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
# ISO-8601 date-time with a zone: 2026-11-22T10:00:00Z, ...T10:00:00.123+02:00
ISO_WITH_ZONE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$"
_JSON_NUMBER = ("BIGINT", "DOUBLE", "DECIMAL")
TOMBSTONE, TOO_LARGE, INVALID_UTF8 = "tombstone", "too_large", "invalid_utf8"
"""Why a value is quarantined unread (``_unread``)."""
MAX_DEPTH = 1000
"""Spark's JSON parser refuses values nested deeper than this."""
NON_FINITE = r"[:\[,]\s*-?(NaN|Infinity)\s*[,\]}]"
DEFAULT_PARTITIONS = 3


@dataclass(frozen=True)
class Field:
    """One field of the contract."""

    name: str
    type: str
    """string | integer | number | boolean | timestamp | decimal(p,s)"""
    required: bool = False
    default: Any = None
    description: str = ""
    pii: bool = False
    """Personal data: silver holds a keyed pseudonym of it (``lakehouse.privacy``)."""

    @property
    def decimal(self) -> tuple[int, int] | None:
        """``(precision, scale)`` of a ``decimal(p,s)`` field, else None."""
        match = _DECIMAL.match(self.type)
        return (int(match.group(1)), int(match.group(2))) if match else None

    @property
    def numeric(self) -> bool:
        """A JSON number: integer, number or decimal."""
        return self.type in ("integer", "number") or self.decimal is not None

    @property
    def spark_type(self) -> T.DataType:
        """The silver column type."""
        if self.decimal:
            return T.DecimalType(*self.decimal)
        return {"string": T.StringType(), "integer": T.LongType(), "number": T.DoubleType(),
                "boolean": T.BooleanType(), "timestamp": T.TimestampType()}[self.type]

    @property
    def read_type(self) -> T.DataType:
        """The type the JSON reader reads the value as: the silver type, except timestamps,
        which are read as their text and cast (the contract's ISO-8601 rule)."""
        return T.StringType() if self.type == "timestamp" else self.spark_type

    @property
    def json_types(self) -> tuple[str, ...]:
        """Variant type names (prefixes) a JSON value of this field may have."""
        if self.type in ("string", "timestamp"):
            return ("STRING",)
        if self.type == "integer":
            return ("BIGINT",)
        if self.type == "boolean":
            return ("BOOLEAN",)
        return _JSON_NUMBER

    @property
    def json_type_name(self) -> str:
        """How the reason text names the expected JSON type."""
        return {"string": "string", "timestamp": "string (ISO-8601)", "integer": "integer",
                "boolean": "boolean"}.get(self.type, "number")


@dataclass(frozen=True)
class Contract:
    """The contract of one source's events."""

    name: str
    key: str
    """The field that identifies an event (deduplication key)."""
    event_time: str
    """The timestamp field events are dated by (silver's ``event_date`` partition)."""
    max_future_seconds: int
    """How far after its processing time an event may claim to have happened."""
    fields: tuple[Field, ...]
    source_file: str = ""
    max_record_bytes: int = 1024 * 1024
    """The largest raw value parsed; a larger one is quarantined unread
    (``contract.too_large``)."""
    topic: str = ""
    """The Kafka topic the source's events arrive on (default: the source's name)."""
    partitions: int = DEFAULT_PARTITIONS
    """The topic's partitions when the project creates it (a deployment may override)."""
    format: str = "json"
    """How values are written: ``json`` or ``avro`` (a deployment may override)."""

    @property
    def pii_fields(self) -> tuple[str, ...]:
        """The fields marked ``pii: true``."""
        return tuple(f.name for f in self.fields if f.pii)

    @property
    def spark_schema(self) -> T.StructType:
        """The typed fields of a valid record, in contract order."""
        return T.StructType([T.StructField(f.name, f.spark_type, nullable=not f.required)
                             for f in self.fields])


def load_contract(path: str | Path) -> Contract:
    """Read and check a contract file; any mistake is LH-CONTRACT-001 naming the file."""
    path = Path(path)
    if not path.is_file():
        raise _invalid(str(path), "file not found")
    return parse_contract(path.read_text(encoding="utf-8"), str(path))


def _invalid(where: str, message: str) -> LakehouseError:
    return LakehouseError(ErrorCode.CONTRACT_INVALID, f"contract {where}: {message}",
                          hint="see expectations/README.md for the contract format",
                          file=where)


def parse_contract(text: str, where: str) -> Contract:
    """Check a contract's YAML text (``where`` names it in errors: a file, ``REF:path``)."""
    path = Path(where.rpartition(":")[2])

    def bad(message: str) -> LakehouseError:
        return _invalid(where, message)

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise bad(f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise bad("must be a mapping")
    allowed = {"name", "description", "topic", "partitions", "format", "key", "event_time",
               "max_future_seconds", "max_record_bytes", "fields"}
    unknown = set(raw) - allowed
    if unknown:
        raise bad(f"unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
    if not isinstance(raw.get("fields"), dict) or not raw["fields"]:
        raise bad("'fields' must map field names to their definitions")
    fields = []
    for name, spec in raw["fields"].items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise bad(f"field name {name!r} must match {_NAME.pattern}")
        spec = spec or {}
        if not isinstance(spec, dict) or set(spec) - {"type", "required", "default",
                                                      "description", "pii"}:
            raise bad(f"field {name}: allowed keys are type, required, default, description, "
                      "pii")
        ftype = str(spec.get("type", ""))
        if ftype not in ("string", "integer", "number", "boolean", "timestamp") \
                and not _DECIMAL.match(ftype):
            raise bad(f"field {name}: type {ftype!r} is not one of string, integer, number, "
                      "boolean, timestamp, decimal(p,s)")
        if not isinstance(spec.get("required", False), bool):
            raise bad(f"field {name}: required must be true or false")
        pii = spec.get("pii", False)
        if not isinstance(pii, bool):
            raise bad(f"field {name}: pii must be true or false")
        if pii and ftype != "string":
            raise bad(f"field {name}: only string fields can be pii (silver holds a keyed "
                      "hash of the text)")
        default = spec.get("default")
        if default is not None and not _default_fits(ftype, default):
            raise bad(f"field {name}: default {default!r} is not a {ftype}"
                      + (" (an ISO-8601 time with a zone offset or Z)"
                         if ftype == "timestamp" else ""))
        fields.append(Field(name, ftype, spec.get("required", False), default,
                            str(spec.get("description", "")), pii))
    names = {f.name for f in fields}
    for key in ("key", "event_time"):
        if raw.get(key) not in names:
            raise bad(f"'{key}' must name one of the fields, got {raw.get(key)!r}")
    if next(f.type for f in fields if f.name == raw["event_time"]) != "timestamp":
        raise bad("the event_time field must have type timestamp")
    if EXTRAS in names or any(n.startswith("_") for n in names):
        raise bad(f"field names '{EXTRAS}' and names starting with '_' are reserved")
    future = raw.get("max_future_seconds", 300)
    if not isinstance(future, int) or future < 0:
        raise bad("max_future_seconds must be a non-negative integer")
    largest = raw.get("max_record_bytes", Contract.max_record_bytes)
    if not isinstance(largest, int) or isinstance(largest, bool) or largest < 1:
        raise bad("max_record_bytes must be a positive integer (bytes)")
    name = str(raw.get("name") or path.name.split(".")[0])
    topic = raw.get("topic", name)
    if not isinstance(topic, str) or not topic.strip():
        raise bad("'topic' must name the Kafka topic the events arrive on, e.g. "
                  "topic: shop.payments.v1 (default: the source's name)")
    partitions = raw.get("partitions", DEFAULT_PARTITIONS)
    if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
        raise bad("partitions must be a positive integer (the topic's, when the project "
                  "creates it)")
    fmt = raw.get("format", "json")
    if fmt not in FORMATS:
        raise bad(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return Contract(name, raw["key"],
                    raw["event_time"], future, tuple(fields), where, largest, topic.strip(),
                    partitions, fmt)


def _default_fits(ftype: str, value: Any) -> bool:
    """Whether a contract default has the field's type."""
    if ftype in ("string", "timestamp"):
        return isinstance(value, str) and (ftype == "string" or bool(re.match(ISO_WITH_ZONE,
                                                                              value)))
    if ftype == "boolean":
        return isinstance(value, bool)
    if ftype == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Check:
    """A rule a record can fail: its name, when it fails, and the reason shown."""

    rule: str
    fails: Column
    reason: Column


def add_failures(df: DataFrame, checks: list[Check]) -> DataFrame:
    """Append the failed checks to ``_failed_rules`` and ``_reasons`` (creating them)."""
    rules, reasons = failure_columns(checks, RULES in df.columns)
    keep = [c for c in df.columns if c not in (RULES, REASONS)]
    return df.select(*keep, rules, reasons)


def failure_columns(checks: list[Check], appended: bool) -> tuple[Column, Column]:
    """``_failed_rules`` and ``_reasons`` with the failed ``checks``, ``appended`` to the
    ones the rows have already or (False) as the first."""
    def joined(column: str, parts: list[Column]) -> Column:
        previous = [F.col(column)] if appended else []
        return F.nullif(F.concat_ws(SEP, *previous, *parts), F.lit("")).alias(column)

    rules = joined(RULES, [F.when(c.fails, F.lit(c.rule)) for c in checks])
    # A reason may quote the record (a key, a value): the separator in it is shown escaped,
    # so one reason stays one reason.
    reasons = joined(REASONS, [F.when(c.fails, F.regexp_replace(c.reason, SEP, r"\\u001f"))
                               for c in checks])
    return rules, reasons


def failure_list(column: str) -> Column:
    """``_failed_rules`` or ``_reasons`` as an array (empty when none)."""
    return F.coalesce(F.split(F.col(column), SEP), F.array().cast("array<string>"))


def parse(df: DataFrame, contract: Contract, processed_at: str) -> DataFrame:
    """Parse ``df.value`` (raw bytes) against the contract.

    Returns ``df``'s columns, then every contract field typed (null where broken or
    absent), ``extras`` (unknown keys as a JSON object string, null if none) and
    ``_failures``. A field's default applies when it is absent. ``processed_at`` names the
    column holding the reference time of the future-event check (use a stable one, e.g.
    ingest time, so a replayed batch is classified exactly as the first time).

    The work is staged (parse once, extract each field once, type it once): Spark does
    not share sub-expressions inside conditional branches, so one flat projection would
    re-parse the JSON for every check. Each value's JSON type comes from the variant;
    the typed values come from one ``from_json`` pass, not from typed ``variant_get``
    calls, which build a Cast expression per value (a quarter of the parse's time).

    The expressions are built once per contract (``_parse_plan``): building them costs a
    few thousand calls into the JVM, which every micro-batch would otherwise repeat.

    Hostile values fail one rule each and are never parsed further: a tombstone (null
    value), a value over the contract's ``max_record_bytes``, bytes that are not UTF-8, an
    object with a key twice (which value would be the event's?). JSON the parser refuses
    (NaN, nesting deeper than ``MAX_DEPTH``) is malformed, with a reason that says so.
    """
    plan = _parse_plan(contract, processed_at)
    staged = df.select("*", plan.unread.alias("_unread"))
    for stage in plan.stages:
        staged = staged.select("*", *stage)
    return staged.select(*df.columns, *plan.typed, plan.extras, *plan.failed)


@dataclass(frozen=True)
class _ParsePlan:
    """The expressions of a contract's parse, in the order ``parse`` applies them."""

    names: list[str]
    unread: Column
    stages: list[list[Column]]
    """Column groups added one ``select`` after another (each uses the ones before)."""
    typed: list[Column]
    extras: Column
    failed: tuple[Column, Column]
    """``_failed_rules`` and ``_reasons`` (``failure_columns``), over the staged columns."""


@functools.lru_cache(maxsize=32)
def _parse_plan(contract: Contract, processed_at: str) -> _ParsePlan:
    names = [f.name for f in contract.fields]
    raw = F.col("value")
    # A value that is not text of a readable size is quarantined unread: one rule, and a
    # record of several MB costs no parse.
    unread = (F.when(raw.isNull(), F.lit(TOMBSTONE))
              .when(F.octet_length(raw) > contract.max_record_bytes, F.lit(TOO_LARGE))
              .when(~F.expr("is_valid_utf8(cast(value as string))"), F.lit(INVALID_UTF8)))
    text = F.when(F.col("_unread").isNull(), raw.cast("string"))
    reader = T.StructType([T.StructField(f.name, f.read_type) for f in contract.fields])
    stages = [[F.try_parse_json(text).alias(_VARIANT), text.rlike(r"^\s*\{").alias("_obj"),
               F.from_json(text, reader).alias(_VALUES),
               F.json_object_keys(text).alias("_keys")]]
    obj = F.col("_obj") & F.col(_VARIANT).isNotNull()
    stages.append([F.when(obj, F.expr(f"variant_get({_VARIANT}, '$.{n}')")).alias(f"_r_{n}")
                   for n in names])
    stages.append([
        F.when(F.col(f"_r_{n}").isNotNull() & ~F.expr(f"is_variant_null(_r_{n})"),
               F.schema_of_variant(f"_r_{n}")).alias(f"_t_{n}") for n in names])
    keys = F.col("_keys")
    repeated = F.coalesce(F.size(keys) > F.size(F.array_distinct(keys)), F.lit(False))
    typed, failures = [], [
        Check("contract.tombstone", F.col("_unread") == TOMBSTONE,
              F.lit("value is null (a Kafka tombstone): an event needs a value")),
        Check("contract.too_large", F.col("_unread") == TOO_LARGE,
              F.concat(F.lit("value is "), F.format_number(F.octet_length(raw), 0),
                       F.lit(f" bytes, over the contract's max_record_bytes "
                             f"({contract.max_record_bytes:,})"))),
        Check("contract.invalid_utf8", F.col("_unread") == INVALID_UTF8,
              F.lit("value is not valid UTF-8 text")),
        Check("contract.duplicate_key", repeated,
              F.concat(F.lit('key "'), F.filter(
                  keys, lambda k: F.size(F.filter(keys, lambda j: j == k)) > 1)[0],
                  F.lit('" appears more than once in the object'))),
        Check("contract.malformed_json",
              F.col("_unread").isNull() & ~repeated
              & (F.col(_VARIANT).isNull() | (F.col("_obj") & F.col(_VALUES).isNull())),
              F.when(F.col(_VARIANT).isNotNull(),
                     F.lit("value is JSON the field reader cannot read"))
              .when(text.rlike(NON_FINITE), F.lit("value is not valid JSON: NaN and "
                                                   "Infinity are not JSON numbers"))
              .when(F.size(F.split(text, r"[\[{]")) > MAX_DEPTH + 1,
                    F.lit(f"value is not valid JSON, or nests deeper than {MAX_DEPTH:,} "
                          "levels"))
              .otherwise(F.lit("value is not valid JSON"))),
        Check("contract.not_an_object", F.col(_VARIANT).isNotNull() & ~F.col("_obj"),
              F.concat(F.lit("value is JSON but not an object (got "),
                       F.lower(F.split(F.schema_of_variant(_VARIANT), "<")[0]), F.lit(")"))),
    ]
    checked = []
    for fld in contract.fields:
        good, value, checks = _field(fld, contract, obj, F.col(processed_at))
        checked += [good.alias(f"_ok_{fld.name}"), value.alias(f"_v_{fld.name}")]
        failures += checks
        column = F.when(F.col(f"_ok_{fld.name}"), F.col(f"_v_{fld.name}"))
        if fld.default is not None:
            column = F.when(obj & F.col(f"_t_{fld.name}").isNull(),
                            F.lit(fld.default)).otherwise(column)
        typed.append(column.cast(fld.spark_type).alias(fld.name))
    stages.append(checked)
    known = F.array(*[F.lit(n) for n in names])
    as_map = F.expr(f"try_variant_get({_VARIANT}, '$', 'map<string,variant>')")
    # map_filter runs interpreted: only for the rows that have unknown keys.
    unknown = F.array_except(keys, known)
    extras = F.when(obj & (F.size(unknown) > 0), F.to_json(F.map_filter(
        as_map, lambda k, _: ~F.array_contains(known, k)))).alias(EXTRAS)
    return _ParsePlan(names, unread, stages, typed, extras, failure_columns(failures, False))



def _field(fld: Field, contract: Contract, obj: Column,
           processed_at: Column) -> tuple[Column, Column, list[Check]]:
    """One field: (value is valid, typed value, failures it can add), over the staged
    ``_r_<name>`` (the JSON value) and ``_t_<name>`` (its JSON type; null if absent)."""
    raw, jtype = F.col(f"_r_{fld.name}"), F.col(f"_t_{fld.name}")
    ok, parsed = F.col(f"_ok_{fld.name}"), F.col(f"_v_{fld.name}")
    present = jtype.isNotNull()
    type_ok = _type_ok(fld)
    shown = F.substring(F.to_json(raw), 1, 80)
    checks = [Check(
        f"contract.type:{fld.name}", present & ~_any_prefix(jtype, fld.json_types),
        F.concat(F.lit(f"{fld.name} must be a JSON {fld.json_type_name}, got "),
                 F.lower(F.split(jtype, "[<(]")[0]), F.lit(": "), shown))]
    if fld.required:
        checks.append(Check(f"contract.required:{fld.name}", obj & ~present,
                            F.lit(f"{fld.name} is missing or null")))
    value = F.col(_VALUES)[fld.name]
    good = type_ok & value.isNotNull()
    if fld.type == "timestamp":
        as_text = F.col(_VALUES)[fld.name]
        value = F.expr(f"try_cast({_VALUES}.`{fld.name}` as timestamp)")
        good = type_ok & as_text.rlike(ISO_WITH_ZONE) & value.isNotNull()
        checks.append(Check(
            f"contract.timestamp:{fld.name}", _type_ok(fld) & ~ok,
            F.concat(F.lit(f"{fld.name} is not an ISO-8601 time with a zone offset or Z: "),
                     shown)))
        if fld.name == contract.event_time:
            checks.append(future_check(contract, ok, parsed, shown, processed_at))
    elif isinstance(fld.spark_type, T.DecimalType):
        # The exact number, from the value's own JSON text (no per-value Cast expression).
        exact = F.expr(f"try_cast(to_json(_r_{fld.name}) as decimal(38,18))")
        good = type_ok & value.isNotNull() & (value.cast("decimal(38,18)") == exact)
        checks.append(Check(
            f"contract.decimal:{fld.name}", _type_ok(fld) & ~ok,
            F.concat(F.lit(f"{fld.name} does not fit {fld.type} exactly: "), shown)))
    return good, value, checks


def future_check(contract: Contract, ok: Column, value: Column, shown: Column,
            processed_at: Column) -> Check:
    """The event time may not be more than ``max_future_seconds`` after processing."""
    name = contract.event_time
    limit = processed_at + F.expr(f"INTERVAL {contract.max_future_seconds} SECONDS")
    return Check(f"contract.future:{name}", ok & (value > limit),
                 F.concat(F.lit(f"{name} "), shown,
                          F.lit(f" is more than {contract.max_future_seconds}s after its "
                                "processing time "),
                          F.date_format(processed_at, "yyyy-MM-dd'T'HH:mm:ss'Z'")))


def _type_ok(fld: Field) -> Column:
    """The field is present with an acceptable JSON type (over the staged columns)."""
    jtype = F.col(f"_t_{fld.name}")
    return jtype.isNotNull() & _any_prefix(jtype, fld.json_types)


def _any_prefix(text: Column, prefixes: tuple[str, ...]) -> Column:
    out = text.startswith(prefixes[0])
    for p in prefixes[1:]:
        out = out | text.startswith(p)
    return out
