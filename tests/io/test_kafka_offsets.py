"""A Kafka query's offset ranges, read from its checkpoint the way Spark writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakehouse.io.kafka_offsets import (
    OffsetRange,
    batch_ranges,
    committed_offsets,
    parse_log_entry,
    ranges_between,
)

META = json.dumps({"batchWatermarkMs": 0, "batchTimestampMs": 1, "conf": {}})


def offset_log(checkpoint: Path, batch_id: int, offsets: dict) -> None:
    """An entry of Spark's offset log: version, batch metadata, the source's offsets."""
    (checkpoint / "offsets").mkdir(parents=True, exist_ok=True)
    (checkpoint / "offsets" / str(batch_id)).write_text(f"v1\n{META}\n{json.dumps(offsets)}")


def start_offsets(checkpoint: Path, offsets: dict) -> None:
    """The Kafka source's initial offsets file: a NUL byte (SPARK-19517), version, JSON."""
    (checkpoint / "sources" / "0").mkdir(parents=True)
    (checkpoint / "sources" / "0" / "0").write_text(f"\x00v1\n{json.dumps(offsets)}")


def test_parse_takes_the_sources_line() -> None:
    assert parse_log_entry(f'v1\n{META}\n{{"t":{{"1":7,"0":5}}}}') == {"t": {"1": 7, "0": 5}}
    assert parse_log_entry('\x00v1\n{"t":{"0":0}}') == {"t": {"0": 0}}
    with pytest.raises(ValueError):
        parse_log_entry("not a log")


def test_ranges_between_skips_empty_and_starts_new_partitions_at_zero() -> None:
    start = {"t": {"0": 5, "1": 9}}
    end = {"t": {"0": 8, "1": 9, "2": 4}}
    assert ranges_between(start, end) == [OffsetRange("t", 0, 5, 8), OffsetRange("t", 2, 0, 4)]


def test_batch_ranges_from_the_start_offsets_then_the_previous_batch(tmp_path: Path) -> None:
    checkpoint = tmp_path / "bronze.orders"
    start_offsets(checkpoint, {"t": {"0": 2, "1": 0}})
    offset_log(checkpoint, 0, {"t": {"0": 10, "1": 4}})
    offset_log(checkpoint, 1, {"t": {"0": 10, "1": 9}})
    assert batch_ranges(str(checkpoint), 0) == [OffsetRange("t", 0, 2, 10),
                                               OffsetRange("t", 1, 0, 4)]
    assert batch_ranges(str(checkpoint), 1) == [OffsetRange("t", 1, 4, 9)]
    with pytest.raises(FileNotFoundError):
        batch_ranges(str(checkpoint), 2)


def test_committed_offsets_are_the_last_committed_batchs_end(tmp_path: Path) -> None:
    checkpoint = tmp_path / "q"
    assert committed_offsets(str(checkpoint)) == {}
    offset_log(checkpoint, 0, {"t": {"0": 3}})
    offset_log(checkpoint, 1, {"t": {"0": 6}})  # planned, not committed yet
    (checkpoint / "commits").mkdir()
    (checkpoint / "commits" / "0").write_text('v1\n{"nextBatchWatermarkMs":0}')
    assert committed_offsets(str(checkpoint)) == {"t": {"0": 3}}
