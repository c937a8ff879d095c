"""Contract and suite files: every mistake is an error at start-up, naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import types as T

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.quality.contract import load_contract
from lakehouse.quality.rules import SUPPORTED_TYPES, load_suite

GOOD = """
name: t
key: id
event_time: at
fields:
  id: {type: string, required: true}
  at: {type: timestamp, required: true}
  amount: {type: "decimal(12,2)"}
  n: {type: integer, default: 1}
"""


def write(tmp_path: Path, text: str, name: str = "t.contract.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_spark_schema_is_derived_from_the_contract(tmp_path: Path) -> None:
    contract = load_contract(write(tmp_path, GOOD))
    assert contract.spark_schema == T.StructType([
        T.StructField("id", T.StringType(), False), T.StructField("at", T.TimestampType(), False),
        T.StructField("amount", T.DecimalType(12, 2), True),
        T.StructField("n", T.LongType(), True)])
    assert contract.max_future_seconds == 300


@pytest.mark.parametrize("broken", [
    GOOD.replace("key: id", "key: nope"),
    GOOD.replace("type: timestamp", "type: string"),
    GOOD.replace("type: integer", "type: int"),
    GOOD.replace("name: t", "name: t\ncolour: red"),
    GOOD.replace("  n: {type: integer, default: 1}", "  extras: {type: string}"),
    GOOD.replace("required: true}", "required: yes please}"),
    "fields: []",
    "name: [unclosed",
])
def test_bad_contracts_fail_with_a_stable_code(tmp_path: Path, broken: str) -> None:
    with pytest.raises(LakehouseError) as err:
        load_contract(write(tmp_path, broken))
    assert err.value.code is ErrorCode.CONTRACT_INVALID


def suite(tmp_path: Path, *expectations: dict) -> Path:
    path = tmp_path / "t.suite.json"
    path.write_text(json.dumps({"name": "t", "expectations": list(expectations)}))
    return path


def test_every_supported_type_loads(tmp_path: Path) -> None:
    kwargs = {"expect_column_values_to_be_in_set": {"value_set": ["a"]},
              "expect_column_values_to_not_be_in_set": {"value_set": ["a"]},
              "expect_column_values_to_match_regex": {"regex": "^a"},
              "expect_column_values_to_not_match_regex": {"regex": "^a"},
              "expect_column_values_to_be_between": {"min_value": 1},
              "expect_column_value_lengths_to_be_between": {"min_value": 1}}
    exps = [{"type": t, "kwargs": {"column": "id", **kwargs.get(t, {})}, "meta": {"name": t}}
            for t in SUPPORTED_TYPES]
    loaded = load_suite(suite(tmp_path, *exps), ("id",))
    assert [r.type for r in loaded.rules] == list(SUPPORTED_TYPES)


@pytest.mark.parametrize(("expectation", "code"), [
    ({"type": "expect_column_mean_to_be_between", "kwargs": {"column": "id", "min_value": 1}},
     ErrorCode.EXPECTATION_UNSUPPORTED),
    ({"type": "expect_column_values_to_be_between",
      "kwargs": {"column": "id", "min_value": 1, "row_condition": "x > 1"}},
     ErrorCode.EXPECTATION_UNSUPPORTED),
    ({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "nope"}},
     ErrorCode.SUITE_INVALID),
    ({"type": "expect_column_values_to_match_regex", "kwargs": {"column": "id", "regex": "("}},
     ErrorCode.SUITE_INVALID),
])
def test_unsupported_or_broken_expectations_fail_at_start_up(
        tmp_path: Path, expectation: dict, code: ErrorCode) -> None:
    with pytest.raises(LakehouseError) as err:
        load_suite(suite(tmp_path, expectation), ("id",))
    assert err.value.code is code


def test_rule_names_must_be_distinct(tmp_path: Path) -> None:
    exp = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"},
           "meta": {"name": "same"}}
    with pytest.raises(LakehouseError) as err:
        load_suite(suite(tmp_path, exp, exp), ("id",))
    assert err.value.code is ErrorCode.SUITE_INVALID
