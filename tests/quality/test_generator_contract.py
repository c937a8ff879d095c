"""Generated events against the real parse and suite on Spark: every valid event passes
every contract and suite rule, every broken one fails at least one, and an out-of-range
value breaks a suite rule (or, where the suite gives nothing to break, the field's type)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.generator import EventShape, Fault, generate
from lakehouse.quality.contract import RULES, failure_list, parse
from lakehouse.quality.rules import Suite, apply_rules
from tests.shapes import payments_shape, shape

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
BROKEN = (Fault.MISSING_FIELD, Fault.WRONG_TYPE, Fault.OUT_OF_RANGE)


def failures(spark: SparkSession, s: EventShape, seed: int, count: int = 300,
             faults: float = 0.4) -> list[tuple[Fault | None, list[str]]]:
    """Each generated record's fault and the rules it failed (parse, then the suite)."""
    records = list(generate(s, count, seed=seed, faults=faults, now=NOW))
    df = spark.createDataFrame([(n, r.key, r.value) for n, r in enumerate(records)],
                               "n int, key binary, value binary")
    df = df.withColumn("ingested_at", F.lit(NOW))
    checked = apply_rules(parse(df, s.contract, "ingested_at"), s.suite)
    rows = checked.select("n", failure_list(RULES).alias("rules")).collect()
    failed = {row["n"]: list(row["rules"]) for row in rows}
    return [(r.fault, failed[n]) for n, r in enumerate(records)]


@pytest.mark.parametrize("source", ["orders", "clickstream", "payments", "orders-derived",
                                    "clickstream-derived"])
def test_generated_events_meet_the_contract_and_suite(spark: SparkSession, tmp_path: Path,
                                                      source: str) -> None:
    name, _, derived = source.partition("-")
    s = payments_shape(tmp_path) if name == "payments" else shape(name)
    if derived:  # the repository's contract and suite, without the hand-written maker
        s = EventShape(s.contract, s.suite)
    seen = set()
    for fault, rules in failures(spark, s, seed=11):
        seen.add(fault)
        if fault is None:
            assert rules == [], rules
        elif fault in BROKEN:
            assert rules, fault
            if fault is Fault.OUT_OF_RANGE:
                assert all(r.startswith("expect.") for r in rules), rules
    assert {None, *BROKEN} <= seen


def test_out_of_range_falls_back_to_the_type_rule(spark: SparkSession, tmp_path: Path) -> None:
    s = payments_shape(tmp_path)
    bare = EventShape(s.contract, Suite("none", ()))
    out = [rules for fault, rules in failures(spark, bare, seed=3, count=150, faults=1.0)
           if fault is Fault.OUT_OF_RANGE]
    assert out
    assert all(len(rules) == 1 and rules[0].startswith("contract.type:") for rules in out), out
