"""Expectation suites (Great Expectations 1.x JSON) compiled into one Spark predicate pass.

A suite file ``expectations/<table>.suite.json`` is GX's own suite format::

    {"name": "orders", "expectations": [
      {"type": "expect_column_values_to_be_between",
       "kwargs": {"column": "amount", "min_value": 0, "max_value": 1000000},
       "meta": {"name": "amount_in_range", "critical": false}}]}

Silver never runs GX once per rule and batch: every supported expectation type is
compiled here into a Spark predicate with GX's row semantics (nulls are never unexpected
except for ``expect_column_values_to_not_be_null``), all of them are evaluated in the
parse's one pass, and each expectation's result (``results``: element count, unexpected
count and percent, success with ``mostly``) is computed from that pass's counts with GX's
formulas. ``tests/quality/test_gx_agreement.py`` proves, per type, that the rows a
predicate rejects are exactly the rows GX reports as unexpected and that the results
equal GX's own validation of the same rows (``lakehouse.quality.gx``).

``meta.name`` is the rule's stable name (default ``<type>:<column>``); ``meta.critical``
makes a batch fail instead of being written when the rule's unexpected percent exceeds
``meta.max_unexpected_percent`` (default: the configured threshold).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.quality.contract import Check, add_failures


@dataclass(frozen=True)
class Rule:
    """One expectation of a suite."""

    name: str
    type: str
    column: str
    kwargs: Mapping[str, Any]
    critical: bool = False
    max_unexpected_percent: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleResult:
    """One expectation's verdict on one batch, in GX's terms."""

    rule: str
    expectation_type: str
    column: str
    critical: bool
    success: bool
    element_count: int
    unexpected_count: int
    unexpected_percent: float


@dataclass(frozen=True)
class Suite:
    """A table's expectation suite."""

    name: str
    rules: tuple[Rule, ...]
    source_file: str = ""


def _between(c: Column, kw: Mapping[str, Any]) -> Column:
    ok = F.lit(True)
    if kw.get("min_value") is not None:
        low = F.lit(kw["min_value"])
        ok = ok & ((c > low) if kw.get("strict_min") else (c >= low))
    if kw.get("max_value") is not None:
        high = F.lit(kw["max_value"])
        ok = ok & ((c < high) if kw.get("strict_max") else (c <= high))
    return ok


def _bounds(kw: Mapping[str, Any]) -> str:
    low, high = kw.get("min_value"), kw.get("max_value")
    if low is not None and high is not None:
        return f"between {low} and {high}"
    return f"at least {low}" if low is not None else f"at most {high}"


# type -> (kwargs it accepts besides column/mostly, fails(column, kwargs), reason text)
_Compiler = tuple[frozenset[str], Callable[[Column, Mapping[str, Any]], Column],
                  Callable[[str, Mapping[str, Any]], str]]
COMPILERS: dict[str, _Compiler] = {
    "expect_column_values_to_not_be_null": (
        frozenset(), lambda c, kw: c.isNull(),
        lambda col, kw: f"{col} must not be null"),
    "expect_column_values_to_be_in_set": (
        frozenset({"value_set"}),
        lambda c, kw: c.isNotNull() & ~c.isin(list(kw["value_set"])),
        lambda col, kw: f"{col} must be one of {', '.join(map(str, kw['value_set']))}"),
    "expect_column_values_to_not_be_in_set": (
        frozenset({"value_set"}),
        lambda c, kw: c.isNotNull() & c.isin(list(kw["value_set"])),
        lambda col, kw: f"{col} must not be one of {', '.join(map(str, kw['value_set']))}"),
    "expect_column_values_to_be_between": (
        frozenset({"min_value", "max_value", "strict_min", "strict_max"}),
        lambda c, kw: c.isNotNull() & ~_between(c, kw),
        lambda col, kw: f"{col} must be {_bounds(kw)}"),
    "expect_column_value_lengths_to_be_between": (
        frozenset({"min_value", "max_value", "strict_min", "strict_max"}),
        lambda c, kw: c.isNotNull() & ~_between(F.char_length(c), kw),
        lambda col, kw: f"{col} must have a length {_bounds(kw)}"),
    "expect_column_values_to_match_regex": (
        frozenset({"regex"}),
        lambda c, kw: c.isNotNull() & ~c.rlike(kw["regex"]),
        lambda col, kw: f"{col} must match {kw['regex']}"),
    "expect_column_values_to_not_match_regex": (
        frozenset({"regex"}),
        lambda c, kw: c.isNotNull() & c.rlike(kw["regex"]),
        lambda col, kw: f"{col} must not match {kw['regex']}"),
}
SUPPORTED_TYPES = tuple(sorted(COMPILERS))
_COMMON_KWARGS = frozenset({"column", "mostly"})


def load_suite(path: str | Path, columns: tuple[str, ...] | None = None) -> Suite:
    """Read a GX suite file and check every expectation can be compiled.

    ``columns``: the columns the suite may refer to (the contract's fields); a rule on
    another column is an error here, at start-up, not a failed batch later.
    """
    path = Path(path)

    def bad(code: ErrorCode, message: str, hint: str = "") -> LakehouseError:
        return LakehouseError(code, f"suite {path}: {message}",
                              hint=hint or "see expectations/README.md", file=str(path))

    if not path.is_file():
        raise bad(ErrorCode.SUITE_INVALID, "file not found",
                  hint=f"every contract needs its suite beside it; one with no rules is "
                       f'{{"name": "{path.name.split(".")[0]}", "expectations": []}} '
                       "(see expectations/README.md)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise bad(ErrorCode.SUITE_INVALID, f"not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("expectations"), list):
        raise bad(ErrorCode.SUITE_INVALID, "must be an object with an 'expectations' list")
    rules: list[Rule] = []
    for i, exp in enumerate(raw["expectations"]):
        where = f"expectation #{i + 1}"
        if not isinstance(exp, dict) or not isinstance(exp.get("kwargs"), dict):
            raise bad(ErrorCode.SUITE_INVALID, f"{where} must have 'type' and 'kwargs'")
        etype, kwargs = exp.get("type", ""), exp["kwargs"]
        meta = exp.get("meta") or {}
        if etype not in COMPILERS:
            raise bad(ErrorCode.EXPECTATION_UNSUPPORTED,
                      f"{where}: expectation type {etype!r} cannot be compiled for row routing",
                      hint=f"supported: {', '.join(SUPPORTED_TYPES)}")
        allowed, _, _ = COMPILERS[etype]
        extra = set(kwargs) - allowed - _COMMON_KWARGS
        if extra:
            raise bad(ErrorCode.EXPECTATION_UNSUPPORTED,
                      f"{where} ({etype}): unsupported arguments {sorted(extra)}",
                      hint=f"supported arguments: {sorted(allowed | _COMMON_KWARGS)}")
        column = kwargs.get("column")
        if not isinstance(column, str) or (columns is not None and column not in columns):
            raise bad(ErrorCode.SUITE_INVALID,
                      f"{where} ({etype}): column {column!r} is not a contract field",
                      hint=f"fields: {', '.join(columns or ())}")
        if "regex" in kwargs:
            try:
                re.compile(kwargs["regex"])
            except re.error as exc:
                raise bad(ErrorCode.SUITE_INVALID, f"{where}: bad regex: {exc}") from exc
        limit = meta.get("max_unexpected_percent")
        rules.append(Rule(str(meta.get("name") or f"{etype}:{column}"), etype, column, kwargs,
                          bool(meta.get("critical", False)),
                          None if limit is None else float(limit), meta))
    names = [r.name for r in rules]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise bad(ErrorCode.SUITE_INVALID, f"rule names used twice: {duplicated}",
                  hint="give each expectation a distinct meta.name")
    return Suite(str(raw.get("name") or path.name.split(".")[0]), tuple(rules), str(path))


def rule_failure(rule: Rule) -> tuple[Column, Column]:
    """``(fails, reason)`` of one rule, as Spark columns."""
    _, fails, text = COMPILERS[rule.type]
    c = F.col(rule.column)
    reason = F.concat(F.lit(text(rule.column, rule.kwargs) + ", got "),
                      F.substring(c.cast("string"), 1, 80))
    return fails(c, rule.kwargs), reason


def apply_rules(df: DataFrame, suite: Suite) -> DataFrame:
    """Add each failed rule (``expect.<name>``) to the record's failures: one projection
    for the whole suite."""
    checks = [Check(f"expect.{rule.name}", *rule_failure(rule)) for rule in suite.rules]
    return add_failures(df, checks) if checks else df


NOT_NULL = "expect_column_values_to_not_be_null"


def statistics(df: DataFrame, suite: Suite) -> list[Column]:
    """The aggregate columns ``results`` needs from a batch that ``apply_rules`` has
    classified: its row count (``_rows``) and each rule column's nulls (``_nulls_<column>``)."""
    columns = sorted({r.column for r in suite.rules})
    return [F.count(F.lit(1)).alias("_rows"),
            *[F.count(F.when(F.col(c).isNull(), 1)).alias(f"_nulls_{c}") for c in columns]]


def results(suite: Suite, rows: int, nulls: Mapping[str, int], unexpected: Mapping[str, int]
            ) -> list[RuleResult]:
    """Each expectation's result with GX's formulas (pure): over the non-null rows of its
    column (every row for ``not_be_null``), unexpected percent = unexpected / considered,
    success when the expected share is at least ``mostly`` (always, with nothing to
    consider). ``unexpected``: failures per rule name, as routing counted them."""
    out = []
    for rule in suite.rules:
        bad = unexpected.get(rule.name, 0)
        considered = rows if rule.type == NOT_NULL else rows - nulls.get(rule.column, 0)
        percent = 100.0 * bad / considered if considered else 0.0
        mostly = float(rule.kwargs.get("mostly", 1.0))
        success = not considered or (considered - bad) / considered >= mostly
        out.append(RuleResult(rule.name, rule.type, rule.column, rule.critical, success,
                              rows, bad, percent))
    return out
