"""Data contracts: the fields, JSON types and required-ness of one source's events.

A contract is a small YAML file (``expectations/<name>.contract.yaml``), written once and
checked when read (any mistake is LH-CONTRACT-001 naming the file and the key); the Spark
schema of the silver table and the parsing of raw Kafka values are derived from it.
Types are strict: a JSON string ``"12.50"`` where the contract says number is a
violation, never coerced. Keys the contract does not name are kept, as one JSON string
in the ``extras`` column.

Parsing is a pure DataFrame transformation (``parse``): raw bytes in, typed columns plus
``_failed_rules`` / ``_reasons`` (every contract rule the record broke, with a readable
reason) out. It uses Spark's VARIANT type, so a record's JSON is parsed once, in the JVM.
"""

from __future__ import annotations

import functools
import operator
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import pydantic
import yaml
from pydantic import AfterValidator, BeforeValidator, StrictBool, StrictInt, TypeAdapter, model_validator
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.validation import FILE, UNKNOWN_KEY, bad, must, problems

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
TOMBSTONE, TOO_LARGE, INVALID_UTF8 = "tombstone", "too_large", "invalid_utf8"
"""Why a value is quarantined unread (``_unread``)."""
MAX_DEPTH = 1000
"""Spark's JSON parser refuses values nested deeper than this."""
NON_FINITE = r"[:\[,]\s*-?(NaN|Infinity)\s*[,\]}]"
DEFAULT_PARTITIONS = 3
Format = Literal["json", "avro"]
FORMATS: tuple[str, ...] = get_args(Format)
"""How a source's values are written (a contract's ``format``, a config's
``sources.<name>.format``)."""
Compatibility = Literal["BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE",
                        "FULL", "FULL_TRANSITIVE", "NONE"]
COMPATIBILITY_LEVELS: tuple[str, ...] = get_args(Compatibility)
"""The compatibility levels of the Confluent schema registry API: which changes of a
contract (of its Avro schema) a level allows."""
_TYPES = {"string": (T.StringType(), ("STRING",), "string"),
          "integer": (T.LongType(), ("BIGINT",), "integer"),
          "number": (T.DoubleType(), ("BIGINT", "DOUBLE", "DECIMAL"), "number"),
          "boolean": (T.BooleanType(), ("BOOLEAN",), "boolean"),
          "timestamp": (T.TimestampType(), ("STRING",), "string (ISO-8601)")}
"""A field type's silver type, the variant types (prefixes) of its JSON values, and how a
reason names them (a decimal's are a number's)."""


@pydantic.dataclasses.dataclass(frozen=True, config=FILE)
class Field:
    """One field of the contract."""

    name: Annotated[str, must(_NAME.match, f"must match {_NAME.pattern}"), must(
        lambda n: n != EXTRAS and not n.startswith("_"),
        f"must not be '{EXTRAS}' or start with '_' (reserved)")]
    type: Annotated[str, must(lambda t: t in _TYPES or _DECIMAL.match(t),
                              f"must be one of {', '.join(_TYPES)}, decimal(p,s)")]
    """string | integer | number | boolean | timestamp | decimal(p,s)"""
    required: StrictBool = False
    default: Any = None
    description: str = ""
    pii: StrictBool = False
    """Personal data: silver holds a keyed pseudonym of it (``lakehouse.privacy``)."""

    @model_validator(mode="after")
    def _consistent(self) -> Field:
        if self.pii and self.type != "string":
            raise bad("only string fields can be pii (silver holds a keyed hash of the text)",
                      at="pii")
        if self.default is not None and not fits_type(self.type, self.default):
            raise bad(f"{self.default!r} is not of type {self.type}"
                      + (" (an ISO-8601 time with a zone offset or Z)"
                         if self.type == "timestamp" else ""), at="default")
        return self

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
        return T.DecimalType(*self.decimal) if self.decimal else _TYPES[self.type][0]

    @property
    def read_type(self) -> T.DataType:
        """The type the JSON reader reads the value as: the silver type, except timestamps,
        which are read as their text and cast (the contract's ISO-8601 rule)."""
        return T.StringType() if self.type == "timestamp" else self.spark_type

    @property
    def json_types(self) -> tuple[str, ...]:
        """Variant type names (prefixes) a JSON value of this field may have."""
        return _TYPES.get(self.type, _TYPES["number"])[1]

    @property
    def json_type_name(self) -> str:
        """How the reason text names the expected JSON type."""
        return _TYPES.get(self.type, _TYPES["number"])[2]


def _named(fields: Any) -> Any:
    """The file's ``fields`` (a mapping: name -> definition) as Field values."""
    if isinstance(fields, tuple):
        return fields
    if not isinstance(fields, dict) or not fields:
        raise bad("must map field names to their definitions")
    return tuple({**spec, "name": name} if isinstance(spec, dict) else
                 {"name": name} if spec is None else spec for name, spec in fields.items())


@pydantic.dataclasses.dataclass(frozen=True, config=FILE)
class Contract:
    """The contract of one source's events."""

    name: str
    key: str
    """The field that identifies an event (deduplication key)."""
    event_time: str
    """The timestamp field events are dated by (silver's ``event_date`` partition)."""
    max_future_seconds: Annotated[StrictInt, pydantic.Field(ge=0)]
    """How far after its processing time an event may claim to have happened."""
    fields: Annotated[tuple[Field, ...], BeforeValidator(_named)]
    source_file: str = ""
    max_record_bytes: StrictInt = pydantic.Field(default=1024 * 1024, gt=0)
    """The largest raw value parsed; a larger one is quarantined unread
    (``contract.too_large``)."""
    topic: Annotated[str, AfterValidator(str.strip), must(bool, (
        "must name the Kafka topic the events arrive on, e.g. topic: shop.payments.v1 "
        "(default: the source's name)"))] = ""
    """The Kafka topic the source's events arrive on (default: the source's name)."""
    partitions: StrictInt = pydantic.Field(default=DEFAULT_PARTITIONS, gt=0)
    """The topic's partitions when the project creates it (a deployment may override)."""
    format: Format = "json"
    """How values are written: ``json`` or ``avro`` (a deployment may override)."""
    description: str = ""

    @model_validator(mode="after")
    def _keys_are_fields(self) -> Contract:
        types = {f.name: f.type for f in self.fields}
        for key in ("key", "event_time"):
            if getattr(self, key) not in types:
                raise bad(f"must name one of the fields, got {getattr(self, key)!r}", at=key)
        if types[self.event_time] != "timestamp":
            raise bad(f"must name a field of type timestamp, got {self.event_time!r} "
                      f"({types[self.event_time]})", at="event_time")
        return self

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


_CONTRACT = TypeAdapter(Contract)


def parse_contract(text: str, where: str) -> Contract:
    """Check a contract's YAML text (``where`` names it in errors: a file, ``REF:path``)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _invalid(where, f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise _invalid(where, "must be a mapping")
    name = raw.get("name") or Path(where.rpartition(":")[2]).name.split(".")[0]
    try:
        return _CONTRACT.validate_python({"max_future_seconds": 300, "topic": name, **raw,
                                          "name": name, "source_file": where})
    except pydantic.ValidationError as exc:
        first = problems(exc)[0]
        if first.loc[0] == "fields" and len(first.loc) > 1:  # a field by its name
            first = replace(first, loc=("fields", list(raw["fields"])[int(first.loc[1])], *first.loc[2:]))
        allowed = [k for k in first.allowed_keys(Contract) if len(first.loc) < 3 or k != "name"]
        raise _invalid(where, first.text + (f" (allowed: {', '.join(allowed)})"
                                            if first.kind == UNKNOWN_KEY else "")) from None


def fits_type(ftype: str, value: Any) -> bool:
    """Whether ``value`` is a JSON value of contract type ``ftype`` (a timestamp: an ISO-8601
    text with a zone), as a field's default must be."""
    if isinstance(value, bool) or ftype == "boolean":
        return isinstance(value, bool) and ftype == "boolean"
    if ftype in ("string", "timestamp"):
        return isinstance(value, str) and (ftype == "string" or bool(re.match(ISO_WITH_ZONE,
                                                                              value)))
    return isinstance(value, int if ftype == "integer" else int | float)


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

    unread: Column
    stages: list[list[Column]]
    """Column groups added one ``select`` after another (each uses the ones before)."""
    typed: list[Column]
    extras: Column
    failed: tuple[Column, Column]
    """``_failed_rules`` and ``_reasons`` (``failure_columns``), over the staged columns."""


def unread_checks(contract: Contract) -> tuple[Column, list[Check]]:
    """Why a raw ``value`` is left unread (the ``_unread`` column: a tombstone, or over
    ``max_record_bytes``), and the rules such a value fails."""
    raw = F.col("value")
    size = F.octet_length(raw)
    unread = (F.when(raw.isNull(), F.lit(TOMBSTONE))
              .when(size > contract.max_record_bytes, F.lit(TOO_LARGE)))
    return unread, [
        Check("contract.tombstone", F.col("_unread") == TOMBSTONE,
              F.lit("value is null (a Kafka tombstone): an event needs a value")),
        Check("contract.too_large", F.col("_unread") == TOO_LARGE,
              F.concat(F.lit("value is "), F.format_number(size, 0),
                       F.lit(f" bytes, over the contract's max_record_bytes "
                             f"({contract.max_record_bytes:,})")))]


@functools.lru_cache(maxsize=32)
def _parse_plan(contract: Contract, processed_at: str) -> _ParsePlan:
    names = [f.name for f in contract.fields]
    raw = F.col("value")
    # A value that is not text of a readable size is quarantined unread: one rule, and a
    # record of several MB costs no parse.
    unread, unread_failures = unread_checks(contract)
    unread = unread.when(~F.expr("is_valid_utf8(cast(value as string))"), F.lit(INVALID_UTF8))
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
        *unread_failures,
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
    return _ParsePlan(unread, stages, typed, extras, failure_columns(failures, False))

def _field(fld: Field, contract: Contract, obj: Column,
           processed_at: Column) -> tuple[Column, Column, list[Check]]:
    """One field: (value is valid, typed value, failures it can add), over the staged
    ``_r_<name>`` (the JSON value) and ``_t_<name>`` (its JSON type; null if absent)."""
    raw, jtype = F.col(f"_r_{fld.name}"), F.col(f"_t_{fld.name}")
    ok, parsed = F.col(f"_ok_{fld.name}"), F.col(f"_v_{fld.name}")
    present = jtype.isNotNull()
    known_type = functools.reduce(operator.or_, [jtype.startswith(p) for p in fld.json_types])
    type_ok = present & known_type
    shown = F.substring(F.to_json(raw), 1, 80)
    checks = [Check(
        f"contract.type:{fld.name}", present & ~known_type,
        F.concat(F.lit(f"{fld.name} must be a JSON {fld.json_type_name}, got "),
                 F.lower(F.split(jtype, "[<(]")[0]), F.lit(": "), shown))]
    if fld.required:
        checks.append(Check(f"contract.required:{fld.name}", obj & ~present,
                            F.lit(f"{fld.name} is missing or null")))
    value = F.col(_VALUES)[fld.name]
    good, broken = type_ok & value.isNotNull(), None
    if fld.type == "timestamp":
        good = type_ok & value.rlike(ISO_WITH_ZONE)
        value = F.expr(f"try_cast({_VALUES}.`{fld.name}` as timestamp)")
        good &= value.isNotNull()
        broken = ("timestamp", "is not an ISO-8601 time with a zone offset or Z")
    elif fld.decimal:
        # The exact number, from the value's own JSON text (no per-value Cast expression).
        exact = F.expr(f"try_cast(to_json(_r_{fld.name}) as decimal(38,18))")
        good &= value.cast("decimal(38,18)") == exact
        broken = ("decimal", f"does not fit {fld.type} exactly")
    if broken:
        checks.append(Check(f"contract.{broken[0]}:{fld.name}", type_ok & ~ok,
                            F.concat(F.lit(f"{fld.name} {broken[1]}: "), shown)))
    if fld.name == contract.event_time:
        checks.append(future_check(contract, ok, parsed, shown, processed_at))
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
