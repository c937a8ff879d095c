"""Quarantine replay picks its records with a Spark condition (``matches``) over the
quarantine table; ``show`` picks them on Arrow (``select``). Both pick the same open
records, and ``as_bronze`` gives them back the bronze shape the silver path reads."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from lakehouse.audit.quarantine import Selection, as_bronze, matches, select
from lakehouse.io.delta import VERSION_COLUMN
from lakehouse.layers.ledger import QUARANTINE_SCHEMA

STAMP = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def record(offset: int, rules: list[str], batch: int, resolution: str | None = None,
           partition: int = 0, topic: str = "t") -> dict[str, Any]:
    return {"event_id": f"e{offset}", "failed_rules": rules, "reasons": [f"why {r}" for r in rules],
            "key": b"k", "value": b"{}", "_topic": topic, "_partition": partition,
            "_offset": offset, "_bronze_version": 3, "_kafka_timestamp": STAMP,
            "_ingested_at": STAMP, "batch_id": batch, "quarantined_at": STAMP,
            "resolved_at": STAMP if resolution else None, "resolution": resolution}


ROWS = [
    record(1, ["expect.amount_in_range"], 1),
    record(2, ["contract.malformed_json"], 2),
    record(3, ["expect.amount_in_range", "contract.type:quantity"], 2, "replayed", 1),
    record(4, ["expect.currency_iso_code", "expect.amount_in_range"], 2, partition=1),
    record(5, [], 3, topic="u"),
]

SELECTIONS = [
    Selection(rules=("amount_in_range",)),
    Selection(rules=("contract.malformed_json", "currency_iso_code")),
    Selection(batches=(2,)),
    Selection(batches=(2, 3), rules=("amount_in_range",)),
    Selection(coordinates=(("t", 0, 2), ("t", 1, 3), ("u", 0, 5))),
    Selection(everything=True),
    Selection(rules=("nothing_like_it",)),
]


def test_spark_and_arrow_selections_pick_the_same_open_records(spark: Any) -> None:
    from pyspark.sql.pandas.types import to_arrow_schema
    arrow = pa.Table.from_pylist(ROWS, to_arrow_schema(QUARANTINE_SCHEMA, timezone="UTC"))
    frame = spark.createDataFrame(ROWS, QUARANTINE_SCHEMA)
    for selection in SELECTIONS:
        expected = sorted(select(arrow, selection).column("_offset").to_pylist())
        got = sorted(r["_offset"] for r in frame.filter(matches(selection)).collect())
        assert got == expected, selection
    assert sorted(r["_offset"] for r in frame.filter(matches(Selection(everything=True)))
                  .collect()) == [1, 2, 4, 5]  # resolved records are never replayed again


def test_quarantined_records_go_back_to_the_bronze_shape(spark: Any) -> None:
    frame = spark.createDataFrame(ROWS[:1], QUARANTINE_SCHEMA)
    bronze = as_bronze(frame)
    assert bronze.columns == ["key", "value", "topic", "partition", "offset", "timestamp",
                              "ingested_at", VERSION_COLUMN]
    row = bronze.first()
    assert row is not None
    assert (row["topic"], row["partition"], row["offset"], row[VERSION_COLUMN]) == ("t", 0, 1, 3)
