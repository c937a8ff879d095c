"""Freshness: seconds from an event's produce time to the gold commit that absorbed it.

Measured from the tables alone, through the input ranges each commit records: a bronze
row's Kafka timestamp (the producer's clock) -> the silver commit covering its bronze
version (``lakehouse.bronze_versions``) -> the first gold commit covering that silver
version (``lakehouse.silver_versions``), whose commit time is when gold showed it.
"""

from __future__ import annotations

import json
import statistics
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime

import pyarrow.compute as pc

from lakehouse import graph
from lakehouse.batch import BRONZE_VERSIONS, SILVER_VERSIONS
from lakehouse.io.delta_log import history, open_table
from lakehouse.registry import GoldTable


@dataclass(frozen=True)
class Covering:
    """A commit and the input versions it covers."""

    version: int
    at_ms: int
    first: int
    last: int


def coverings(uri: str, key: str, storage_options: dict[str, str]) -> list[Covering]:
    """Commits of a table that record an input range under ``key`` (in their commit
    metadata: ``lakehouse.io.delta.history``), oldest first."""
    table = open_table(uri, storage_options)
    if table is None:
        return []
    out = []
    for c in history(table):
        if c.get(key) is not None:
            span = json.loads(c[key]) if isinstance(c[key], str) else c[key]
            out.append(Covering(int(c["version"]), int(c["timestamp"]), int(span["from"]),
                                int(span["to"])))
    return sorted(out, key=lambda c: c.version)


def first_covering(commits: list[Covering], input_version: int) -> Covering | None:
    """The earliest commit whose range includes ``input_version`` (pure)."""
    i = bisect_left(commits, input_version, key=lambda c: c.last)
    return next((c for c in commits[i:] if c.first <= input_version <= c.last), None)


@dataclass(frozen=True)
class Freshness:
    """Produce-to-gold delays of the events produced since some instant."""

    table: str
    seconds: list[float]

    def describe(self) -> str:
        """One line: median, 95th percentile and worst case."""
        if not self.seconds:
            return f"{self.table}: no events since the mark reached it"
        s = sorted(self.seconds)
        p95 = s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]
        return (f"{self.table}: produce -> visible in gold: median {statistics.median(s):.1f}s, "
                f"p95 {p95:.1f}s, max {s[-1]:.1f}s over {len(s):,} events")


def freshness(pipeline: graph.Graph, gold: GoldTable, since: datetime) -> Freshness:
    """Delays of the events produced at or after ``since`` that reached this gold table."""
    opts = dict(pipeline.config.warehouse.storage_options)
    silver_uri = pipeline.node(f"silver.{gold.silver}").uri
    silver = open_table(silver_uri, opts)
    bronze = open_table(pipeline.bronze(f"silver.{gold.silver}").uri, opts)
    if silver is None or bronze is None:
        return Freshness(gold.qualified_name, [])
    produced = bronze.to_pyarrow_table(columns=["topic", "partition", "offset", "timestamp"])
    produced = produced.filter(pc.greater_equal(produced.column("timestamp"), since))
    if produced.num_rows == 0:
        return Freshness(gold.qualified_name, [])
    rows = silver.to_pyarrow_table(columns=["_topic", "_partition", "_offset", "_bronze_version"])
    rows = rows.rename_columns(["topic", "partition", "offset", "_bronze_version"])
    joined = produced.join(rows, ["topic", "partition", "offset"], join_type="inner")
    silver_commits = coverings(silver_uri, BRONZE_VERSIONS, opts)
    gold_commits = coverings(pipeline.node(gold.qualified_name).uri, SILVER_VERSIONS, opts)
    delays = []
    for r in joined.to_pylist():
        s = first_covering(silver_commits, r["_bronze_version"])
        g = first_covering(gold_commits, s.version) if s else None
        if g is not None:
            delays.append(g.at_ms / 1000 - r["timestamp"].timestamp())
    return Freshness(gold.qualified_name, delays)
