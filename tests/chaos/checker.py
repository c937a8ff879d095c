"""The one independent checker every fault scenario ends with.

It reads the broker and the Delta tables, not the pipeline's own counters, and checks the
promise: bronze holds every produced record exactly once and untouched; each bronze record
is in exactly one place (silver, open quarantine, or a duplicate of an event silver
holds); silver holds each event id once; gold equals its batch recomputation from silver
(what ``lakehouse verify gold`` checks, on the suite's Spark session); and every table's
chain verifies (``lakehouse audit verify``): a kill between a commit and its link leaves
nothing unlinked once the job has run again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from pyspark.sql import SparkSession

from lakehouse.config import Config, load_config
from lakehouse.io.delta_log import open_table
from tests.conftest import assert_chains_verified, assert_gold_verified

Coordinates = tuple[int, int]


@dataclass(frozen=True)
class Verdict:
    """What the checker counted."""

    produced: int
    silver: int
    quarantined: int
    duplicates: int

    def describe(self) -> str:
        return (f"{self.produced:,} produced = {self.silver:,} silver + {self.quarantined:,} "
                f"quarantined + {self.duplicates:,} duplicates; 0 lost, 0 twice")


def topic_records(bootstrap: str, topic: str) -> dict[Coordinates, bytes | None]:
    """Every record the broker holds for ``topic``: (partition, offset) -> value."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-checker",
                         "enable.auto.commit": False, "log_level": 0})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: dict[Coordinates, bytes | None] = {}
        deadline = time.monotonic() + 120
        while len(out) < sum(ends.values()):
            assert time.monotonic() < deadline, f"read {len(out)} of {sum(ends.values())}"
            for msg in consumer.consume(1000, timeout=5):
                if msg.error() is None:
                    out[(msg.partition(), msg.offset())] = msg.value()
        return out
    finally:
        consumer.close()


def _table(config: Config, layer: str, name: str, columns: list[str]) -> list[dict]:
    """A table's rows as delta-rs reads them (on disk or on the object store)."""
    table = open_table(config.warehouse.table_uri(layer, name), config.warehouse.storage_options)
    assert table is not None, f"there is no table {layer}.{name}"
    return table.to_pyarrow_table(columns=columns).to_pylist()


def check(config: Path, bootstrap: str, topic: str, spark: SparkSession,
          source: str = "orders") -> Verdict:
    """Check one source's tables against the broker; fails with the first broken promise."""
    produced = topic_records(bootstrap, topic)
    cfg = load_config(config)
    bronze = _table(cfg, "bronze", source, ["partition", "offset", "value"])
    coordinates = [(r["partition"], r["offset"]) for r in bronze]
    assert len(coordinates) == len(set(coordinates)), "bronze holds a record twice"
    assert set(coordinates) == set(produced), \
        f"bronze lacks {len(set(produced) - set(coordinates))} produced records"
    assert all(r["value"] == produced[(r["partition"], r["offset"])] for r in bronze), \
        "bronze changed a record's value"

    silver = _table(cfg, "silver", source, ["event_id", "_partition", "_offset"])
    ids = [r["event_id"] for r in silver]
    assert len(ids) == len(set(ids)), "silver holds an event id twice"
    in_silver = {(r["_partition"], r["_offset"]) for r in silver}
    assert len(in_silver) == len(silver) and in_silver <= set(produced)
    quarantine = [r for r in _table(cfg, "silver", f"{source}_quarantine",
                                    ["_partition", "_offset", "resolved_at"])
                  if r["resolved_at"] is None]
    quarantined = {(r["_partition"], r["_offset"]) for r in quarantine}
    assert len(quarantined) == len(quarantine), "quarantine holds a record twice"
    assert not quarantined & in_silver, "a record is both in silver and in quarantine"

    rest = set(produced) - in_silver - quarantined
    held = set(ids)
    for c in rest:  # neither in silver nor quarantined: must repeat an event silver holds
        value = produced[c]
        assert value is not None and json.loads(value).get("event_id") in held, \
            f"record {c} is nowhere: not in silver, not quarantined, not a duplicate"

    assert_gold_verified(config, spark)
    assert_chains_verified(config, spark)
    return Verdict(len(produced), len(in_silver), len(quarantined), len(rest))
