"""Offset planning of the Kafka reader: pure arithmetic, no broker."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.kafka_offsets import (
    OffsetRange,
    cap_offsets,
    parse_starting_offsets,
    plan_ranges,
    ranges_in,
    resolve_start,
    total_records,
)


def test_no_cap_reads_to_latest() -> None:
    start = {"t": {"0": 5, "1": 0}}
    latest = {"t": {"0": 10, "1": 3}}
    assert cap_offsets(start, latest, None) == latest


@pytest.mark.parametrize("cap", [1, 7, 100, 299, 300])
def test_cap_is_exact_and_proportional(cap: int) -> None:
    start = {"t": {"0": 0, "1": 100, "2": 50}}
    latest = {"t": {"0": 200, "1": 200, "2": 50}}  # 300 waiting, p2 has nothing
    end = cap_offsets(start, latest, cap)
    assert total_records(start, end) == cap
    assert end["t"]["2"] == 50
    assert all(start["t"][p] <= end["t"][p] <= latest["t"][p] for p in "012")
    if cap >= 3:
        assert end["t"]["0"] - 0 >= end["t"]["1"] - 100  # p0 had twice as much waiting


def test_cap_larger_than_waiting() -> None:
    start = {"t": {"0": 0}}
    assert cap_offsets(start, {"t": {"0": 4}}, 10) == {"t": {"0": 4}}


def test_successive_capped_batches_cover_everything() -> None:
    start = {"t": {"0": 0, "1": 0, "2": 0}}
    latest = {"t": {"0": 997, "1": 3, "2": 500}}
    seen = 0
    batches = 0
    while start != latest:
        end = cap_offsets(start, latest, 100)
        n = total_records(start, end)
        assert 0 < n <= 100
        seen += n
        start = end
        batches += 1
    assert seen == 1500
    assert batches == 15


def test_new_partition_starts_at_zero() -> None:
    end = cap_offsets({"t": {"0": 10}}, {"t": {"0": 10, "1": 4}}, None)
    assert end == {"t": {"0": 10, "1": 4}}
    assert plan_ranges({"t": {"0": 10}}, end) == [OffsetRange("t", 1, 0, 4)]


def test_offsets_never_go_backwards_in_the_plan() -> None:
    assert cap_offsets({"t": {"0": 10}}, {"t": {"0": 3}}, None) == {"t": {"0": 10}}


def test_plan_ranges_skips_empty() -> None:
    assert plan_ranges({"a": {"0": 1, "1": 2}}, {"a": {"0": 1, "1": 5}}) == [
        OffsetRange("a", 1, 2, 5)]


def test_resolve_start() -> None:
    bounds = {"t": {0: (3, 10), 1: (0, 0)}}
    assert resolve_start("earliest", bounds) == {"t": {"0": 3, "1": 0}}
    assert resolve_start("latest", bounds) == {"t": {"0": 10, "1": 0}}
    spec = parse_starting_offsets('{"t": {"0": 7}}', ["t"])
    assert resolve_start(spec, bounds) == {"t": {"0": 7, "1": 0}}
    spec = parse_starting_offsets('{"t": {"0": -1, "1": -2}}', ["t"])
    assert resolve_start(spec, bounds) == {"t": {"0": 10, "1": 0}}


@pytest.mark.parametrize("spec", ["{not json", '{"other": {"0": 1}}', '{"t": {"0": "x"}}',
                                  "[1]", '{"t": 5}'])
def test_bad_starting_offsets(spec: str) -> None:
    with pytest.raises(LakehouseError) as info:
        parse_starting_offsets(spec, ["t"])
    assert info.value.code is ErrorCode.KAFKA_BAD_OPTION


def test_ranges_in_batch() -> None:
    table = pa.table({"topic": ["t", "t", "t", "u"], "partition": pa.array([0, 0, 1, 0], pa.int32()),
                      "offset": pa.array([5, 9, 2, 0], pa.int64())})
    assert ranges_in(table) == [
        {"topic": "t", "partition": 0, "from": 5, "to": 10, "records": 2},
        {"topic": "t", "partition": 1, "from": 2, "to": 3, "records": 1},
        {"topic": "u", "partition": 0, "from": 0, "to": 1, "records": 1},
    ]
    assert ranges_in(table.slice(0, 0)) == []
