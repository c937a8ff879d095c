"""Values for a contract's fields: ones that pass its suite's rules on them (as
``lakehouse.quality.rules`` compiles them), ones that break a rule, ones of the wrong type.
What the event generator makes valid and faulty events from.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

import rstr

from lakehouse.quality.contract import Field, fits_type
from lakehouse.quality.rules import NOT_NULL, Rule

IN_SET = "expect_column_values_to_be_in_set"
NOT_IN_SET = "expect_column_values_to_not_be_in_set"
BETWEEN = "expect_column_values_to_be_between"
LENGTHS = "expect_column_value_lengths_to_be_between"
MATCH = "expect_column_values_to_match_regex"
NOT_MATCH = "expect_column_values_to_not_match_regex"
_DRAWS = 12
"""Values drawn for a field before the last one is kept (a rule it cannot satisfy)."""
TYPICAL = (1, 1000)
"""Numbers are drawn here when the field's rules allow it (else inside the rules)."""


def _within(value: Any, kw: Mapping[str, Any]) -> bool:
    try:
        low, high = kw.get("min_value"), kw.get("max_value")
        if low is not None and (value <= low if kw.get("strict_min") else value < low):
            return False
        return not (high is not None
                    and (value >= high if kw.get("strict_max") else value > high))
    except TypeError:
        return False


def iso(ts: datetime) -> str:
    """``ts`` as the events write timestamps: UTC, milliseconds, ``Z``."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def passes(rule: Rule, value: Any) -> bool:
    """Whether ``value`` passes ``rule`` (GX row semantics: a null passes every rule but
    not-null)."""
    kw = rule.kwargs
    if value is None:
        return rule.type != NOT_NULL
    if rule.type == IN_SET:
        return value in list(kw["value_set"])
    if rule.type == NOT_IN_SET:
        return value not in list(kw["value_set"])
    if rule.type == BETWEEN:
        return not isinstance(value, bool | str) and _within(value, kw)
    if rule.type == LENGTHS:
        return _within(len(str(value)), kw)
    if rule.type == MATCH:
        return re.search(kw["regex"], str(value)) is not None
    if rule.type == NOT_MATCH:
        return re.search(kw["regex"], str(value)) is None
    return True


class _Xeger(rstr.Rstr):  # type: ignore[misc]
    """``rstr``'s regex-to-string generator, made deterministic for a seed (a negated
    character class picks from a sorted alphabet, not a set's hash order), with short
    repeats and ``.`` as Java reads it (no line terminators)."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self._cases = {**self._cases,
                       "any": lambda x: self._random.choice(_DOT)}

    def _handle_in(self, value: Any) -> Any:
        candidates = list(chain(*(self._handle_state(i) for i in value)))
        if candidates[0] is False:
            candidates = sorted(set(string.printable).difference(candidates[1:]))
        return self._random.choice(candidates)

    def _handle_repeat(self, start_range: int, end_range: int, value: Any) -> str:
        end_range = min(end_range, start_range + 10)
        times = self._random.randint(start_range, end_range)
        return "".join("".join(self._handle_state(i) for i in value) for _ in range(times))


_DOT = [c for c in string.printable if c not in "\n\r"]


def valid_value(fld: Field, rules: tuple[Rule, ...], rng: random.Random, now: datetime) -> Any:
    value = None
    for attempt in range(_DRAWS):
        value = _draw(fld, rules, rng, now, attempt)
        if fld.type == "timestamp" or all(passes(r, value) for r in rules):
            return value
    return value


def _draw(fld: Field, rules: tuple[Rule, ...], rng: random.Random, now: datetime,
          attempt: int) -> Any:
    members = [r.kwargs["value_set"] for r in rules if r.type == IN_SET]
    if members and list(members[0]):
        return rng.choice(list(members[0]))
    if fld.type == "timestamp":
        return iso(now - timedelta(seconds=rng.uniform(0, 86_400)))
    if fld.type == "boolean":
        return rng.random() < 0.5
    if fld.numeric:
        return _number(fld, [r.kwargs for r in rules if r.type == BETWEEN], rng, attempt)
    regexes = [r.kwargs["regex"] for r in rules if r.type == MATCH]
    if regexes:
        return _Xeger(rng).xeger(regexes[attempt % len(regexes)])
    word = f"{fld.name}-{rng.randrange(1, 10_000)}"
    lengths = [r for r in rules if r.type == LENGTHS]
    if attempt < _DRAWS // 2 and all(passes(r, word) for r in lengths):
        return word
    low, high = _length_bounds([r.kwargs for r in lengths])
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(low, high)))


def _length_bounds(bounds: list[Mapping[str, Any]]) -> tuple[int, int]:
    low, high = 1, None
    for kw in bounds:
        if kw.get("min_value") is not None:
            low = max(low, math.floor(kw["min_value"]) + (1 if kw.get("strict_min") else 0))
        if kw.get("max_value") is not None:
            top = math.ceil(kw["max_value"]) - (1 if kw.get("strict_max") else 0)
            high = top if high is None else min(high, top)
    high = max(low, 12) if high is None else high
    return (low, high) if low <= high else (low, low)


def _number(fld: Field, bounds: list[Mapping[str, Any]], rng: random.Random,
            attempt: int) -> int | float:
    """A number of the field's type inside every ``between`` (in ``TYPICAL`` when that
    overlaps): an integer, a decimal's scale that fits its precision, else 2 places."""
    decimal = fld.decimal
    scale = decimal[1] if decimal else 0 if fld.type == "integer" else 2
    limit = 10.0 ** (decimal[0] - scale) - 10.0 ** -scale if decimal else math.inf
    low, high = -limit, limit
    for kw in bounds:
        if kw.get("min_value") is not None:
            low = max(low, float(kw["min_value"]))
        if kw.get("max_value") is not None:
            high = min(high, float(kw["max_value"]))
    if math.isinf(low) and math.isinf(high):
        low, high = TYPICAL
    elif math.isinf(low):
        low = high - (TYPICAL[1] - TYPICAL[0])
    elif math.isinf(high):
        high = low + (TYPICAL[1] - TYPICAL[0])
    if attempt < _DRAWS // 2 and max(low, TYPICAL[0]) < min(high, TYPICAL[1]):
        low, high = max(low, TYPICAL[0]), min(high, TYPICAL[1])
    if attempt == _DRAWS - 1:  # the last draw: the middle (every strict bound excluded)
        middle = (low + high) / 2
        return round(middle) if scale == 0 else round(middle, scale)
    if scale == 0:
        return rng.randint(math.ceil(low), math.floor(high)) if math.ceil(low) <= high \
            else round(low)
    return round(rng.uniform(low, high), scale)


# -- faults, derived from the contract and suite ---------------------------------------------


def breaking_values(rule: Rule, fld: Field) -> list[Any]:
    """Values of ``fld``'s JSON type that break ``rule``."""
    kw = rule.kwargs
    numeric = fld.numeric
    if rule.type == NOT_NULL:
        return [None] if not fld.required and fld.default is None else []
    if rule.type == BETWEEN and numeric:
        out = []
        if kw.get("min_value") is not None:
            out.append(math.floor(kw["min_value"]) - 1)
        if kw.get("max_value") is not None:
            out.append(math.ceil(kw["max_value"]) + 1)
        return [v for v in out if _fits(fld, v)]
    if rule.type in (IN_SET, NOT_IN_SET):
        members = list(kw["value_set"])
        # Of the field's JSON type (a timestamp's: any string).
        typed = [m for m in members
                 if fits_type("string" if fld.type == "timestamp" else fld.type, m)]
        if rule.type == NOT_IN_SET:
            return typed[:1]
        if fld.type == "string":
            word = f"unknown-{fld.name}"
            while word in members:
                word += "-x"
            return [word]
        if fld.type == "boolean":
            return [b for b in (True, False) if b not in members][:1]
        if numeric:
            number = max((math.floor(m) for m in typed), default=0) + 1
            while number in members:
                number += 1
            return [number] if _fits(fld, number) else []
        return []
    if fld.type != "string":
        return []
    if rule.type == LENGTHS:
        out = []
        low, high = kw.get("min_value"), kw.get("max_value")
        if low is not None and (low >= 1 or (kw.get("strict_min") and low >= 0)):
            out.append("")
        if high is not None and high >= 0:
            out.append("x" * (math.floor(high) + 1))
        return out
    if rule.type == MATCH:
        return [c for c in ("not a match!", "#", "0", "") if not re.search(kw["regex"], c)][:1]
    if rule.type == NOT_MATCH:
        xeger = _Xeger(random.Random(0))
        matching = [s for s in (xeger.xeger(kw["regex"]) for _ in range(5))
                    if re.search(kw["regex"], s)]
        return matching[:1]
    return []


def _fits(fld: Field, value: int | float) -> bool:
    """A number the contract reads as the field's type (a decimal's precision)."""
    if fld.decimal:
        precision, scale = fld.decimal
        return abs(value) < 10 ** (precision - scale)
    return abs(value) < 2**63


def wrong_type(fld: Field) -> Any:
    """A JSON value the contract rejects for ``fld``: a number as a string, a string as
    a number, a timestamp as epoch seconds, an integer as a fraction."""
    return {"string": 1234, "integer": 2.5, "timestamp": 1700000000,
            "boolean": "true"}.get(fld.type, "12.50")
