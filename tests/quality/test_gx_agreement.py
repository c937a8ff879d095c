"""The compiled Spark predicates reject exactly the rows GX reports as unexpected.

For every supported expectation type (several argument variants each), on generated data
full of edge cases (boundaries, nulls, empty and blank strings, unicode, newlines), run
the suite through GX 1.x (its Spark execution engine) with COMPLETE results and through
``apply_rules`` in Spark, and compare the sets of row ids, rule by rule; then compare the
per-expectation results silver computes from its one pass with GX's own validation.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from lakehouse.quality.contract import RULES, failure_list
from lakehouse.quality.gx import Validator
from lakehouse.quality.rules import SUPPORTED_TYPES, apply_rules, load_suite, results, statistics

ROWS_PER_SEED = 4000
SEEDS = (1, 2, 3)

STRINGS = ["USD", "usd", "EUR", "US", "DE", "Germany", "", " ", "  x ", "A1C", "ABCD",
           "ÄÖÜ", "文具", "café & küche", "snake_case", "page_view", "Page View", "a-b",
           "http://x", "https://shop.example.com/p/1", "https://", "not a url", "ABC\n",
           "line\nbreak", "tab\there", "🙂", "order_placed", "order_paid", "x" * 40]
NUMBERS = [0.0, -0.0, 0.01, -0.01, 1.0, 1e6, 1e6 + 0.01, 999999.99, 10000.0, 10000.5, -5.0,
           2e6, 12.5]
INTEGERS = [0, 1, -1, 2, 3, 10000, 10001, 20000]

EXPECTATIONS: list[dict[str, Any]] = [
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "s"}},
    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "n"}},
    {"type": "expect_column_values_to_be_in_set",
     "kwargs": {"column": "s", "value_set": ["USD", "EUR", "文具", ""]}},
    {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "i", "value_set": [1, 2, 3]}},
    {"type": "expect_column_values_to_not_be_in_set",
     "kwargs": {"column": "s", "value_set": ["usd", "Germany", " "]}},
    {"type": "expect_column_values_to_be_between",
     "kwargs": {"column": "n", "min_value": 0, "max_value": 1000000}},
    {"type": "expect_column_values_to_be_between",
     "kwargs": {"column": "n", "min_value": 0, "max_value": 1000000, "strict_min": True,
                "strict_max": True}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "i", "min_value": 1}},
    {"type": "expect_column_values_to_be_between", "kwargs": {"column": "i", "max_value": 10000}},
    {"type": "expect_column_values_to_be_between",
     "kwargs": {"column": "i", "min_value": 1, "max_value": 10000, "mostly": 0.5}},
    {"type": "expect_column_value_lengths_to_be_between", "kwargs": {"column": "s", "min_value": 1}},
    {"type": "expect_column_value_lengths_to_be_between",
     "kwargs": {"column": "s", "min_value": 2, "max_value": 5}},
    {"type": "expect_column_value_lengths_to_be_between",
     "kwargs": {"column": "s", "min_value": 2, "max_value": 5, "strict_min": True,
                "strict_max": True}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "s", "regex": "^[A-Z]{3}$"}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "s", "regex": "^[A-Z]{2}$"}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "s", "regex": "^[a-z_]+$"}},
    {"type": "expect_column_values_to_match_regex",
     "kwargs": {"column": "s", "regex": "^https?://[^\\s/]+"}},
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "s", "regex": "ü"}},
    {"type": "expect_column_values_to_not_match_regex", "kwargs": {"column": "s", "regex": "\\s"}},
]


def generated(seed: int, rows: int) -> pa.Table:
    """Rows mixing the edge values above with random ones, ~10% nulls per column."""
    rng = random.Random(seed)

    def pick(pool: list[Any], rand: Any) -> Any:
        r = rng.random()
        return None if r < 0.1 else rng.choice(pool) if r < 0.6 else rand()

    alphabet = "ABCXYZabcxyz_ -/:.ü文🙂\n"
    return pa.table({
        "_row": pa.array(range(rows), pa.int64()),
        "s": pa.array([pick(STRINGS, lambda: "".join(rng.choice(alphabet)
                                                      for _ in range(rng.randint(0, 8))))
                       for _ in range(rows)], pa.string()),
        "n": pa.array([pick(NUMBERS, lambda: round(rng.uniform(-10, 1.1e6), 2))
                       for _ in range(rows)], pa.float64()),
        "i": pa.array([pick(INTEGERS, lambda: rng.randint(-5, 12000)) for _ in range(rows)],
                      pa.int64()),
    })


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "agreement.suite.json"
    exps = [{**e, "meta": {"name": f"r{i}"}} for i, e in enumerate(EXPECTATIONS)]
    path.write_text(json.dumps({"name": "agreement", "expectations": exps}))
    return path


def test_every_supported_type_is_covered() -> None:
    assert {e["type"] for e in EXPECTATIONS} == set(SUPPORTED_TYPES)


@pytest.mark.parametrize("seed", SEEDS)
def test_compiled_predicates_reject_exactly_what_gx_reports(spark, suite_file: Path,  # type: ignore[no-untyped-def]
                                                            seed: int) -> None:
    suite = load_suite(suite_file, ("s", "n", "i"))
    data = spark.createDataFrame(generated(seed, ROWS_PER_SEED))
    gx_rows = Validator(suite).unexpected_rows(data, "_row")

    failed = (apply_rules(data, suite)
              .select("_row", F.explode(failure_list(RULES)).alias("rule")).collect())
    spark_rows: dict[str, set[int]] = {r.name: set() for r in suite.rules}
    for row in failed:
        spark_rows[row.rule.removeprefix("expect.")].add(row["_row"])

    for rule in suite.rules:
        assert spark_rows[rule.name] == gx_rows[rule.name], (
            f"{rule.type} {dict(rule.kwargs)}: only Spark "
            f"{sorted(spark_rows[rule.name] - gx_rows[rule.name])[:5]}, only GX "
            f"{sorted(gx_rows[rule.name] - spark_rows[rule.name])[:5]}")
    # The data exercises both outcomes of every rule.
    assert all(0 < len(gx_rows[r.name]) < ROWS_PER_SEED for r in suite.rules)


def test_results_from_the_compiled_pass_equal_gx_validation(spark, suite_file: Path  # type: ignore[no-untyped-def]
                                                            ) -> None:
    """What silver stores per expectation (element count, unexpected count and percent,
    success with ``mostly``) equals GX's own SUMMARY validation of the same rows."""
    suite = load_suite(suite_file, ("s", "n", "i"))
    data = spark.createDataFrame(generated(SEEDS[0], ROWS_PER_SEED))
    gx = {r.rule: r for r in Validator(suite).validate(data)}

    classified = apply_rules(data, suite)
    totals = classified.agg(*statistics(classified, suite)).first()
    failures = {r["rule"].removeprefix("expect."): r["count"] for r in classified.select(
        F.explode(failure_list(RULES)).alias("rule")).groupBy("rule").count().collect()}
    ours = results(suite, totals["_rows"], {c: totals[f"_nulls_{c}"] for c in ("s", "n", "i")},
                   failures)

    assert [r.rule for r in ours] == [r.name for r in suite.rules]
    for r in ours:
        g = gx[r.rule]
        assert (r.element_count, r.unexpected_count, r.success) == \
            (g.element_count, g.unexpected_count, g.success), r.rule
        assert r.unexpected_percent == pytest.approx(g.unexpected_percent), r.rule
    assert {r.success for r in ours} == {True, False}  # both verdicts are exercised
