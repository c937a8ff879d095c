"""Provenance: from a table version back to the Kafka offsets it was built from.

Every pipeline commit records its exact input range in its commit metadata (the JSON in
its ``userMetadata``, read back by ``lakehouse.io.delta_log.history``): Kafka offset ranges
for bronze (``lakehouse.kafka_offsets``), bronze versions for silver
(``lakehouse.bronze_versions``), silver versions for gold (``lakehouse.silver_versions``).
``explain`` follows them down, layer by layer, and gives two answers:

- what **this commit** added: the input versions its batch read, down to Kafka offsets;
- what **the table as of this version** was built from: every input version up to the
  highest one any commit so far covered (gold and silver are cumulative), down to the
  Kafka offsets. Re-reading those records reproduces the table at that version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from lakehouse import graph
from lakehouse.audit.timetravel import AsOf, recorded, resolve, versions
from lakehouse.audit.timetravel import Version as Commit
from lakehouse.batch import (
    BRONZE_VERSIONS,
    KAFKA_OFFSETS,
    QUERY_RUN_ID,
    RUN_ID,
    SILVER_VERSIONS,
    kafka_dataset,
)
from lakehouse.catalog import require_tables, split_name, table_uri
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta_log import open_table
from lakehouse.io.kafka_offsets import OffsetRange
from lakehouse.quality.in_force import CONTRACT_SHA256, SUITE_SHA256

INPUT_KEY = {"bronze": KAFKA_OFFSETS, "silver": BRONZE_VERSIONS, "gold": SILVER_VERSIONS}


@dataclass(frozen=True)
class Hop:
    """One table on the way down and the versions of it that matter."""

    table: str
    commit_versions: tuple[int, int] | None
    """The versions this commit's batch covers (None at the top, where it is one)."""
    upto: int
    """The table as of the version asked about covers this table's versions <= upto."""


@dataclass(frozen=True)
class KafkaRecords:
    """The records of one topic partition a table version holds: offsets ``[start, end)``
    (``records`` can be fewer than the offsets, e.g. across transaction markers)."""

    range: OffsetRange
    records: int


@dataclass(frozen=True)
class Explanation:
    """Where one table version came from."""

    table: str
    version: int
    operation: str
    committed_at: str
    run_id: str | None
    query_run_id: str | None
    batch_id: int | None
    query: str | None
    hops: list[Hop]
    kafka_namespace: str
    commit_offsets: list[KafkaRecords]
    version_offsets: list[KafkaRecords]
    rules: list[dict[str, str]]
    """The contracts and suites (content hashes) the silver commits of this commit's input
    were routed with (``lakehouse audit rules`` prints the files)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def describe(self) -> str:
        """The walk for a terminal."""
        lines = [f"{self.table} version {self.version}: {self.operation} at {self.committed_at}"
                 + (f", batch {self.batch_id} of {self.query}" if self.query else ""),
                 f"  run {self.run_id or '-'} (query run {self.query_run_id or '-'})"]
        for i, hop in enumerate(self.hops[1:], 1):
            this = "" if hop.commit_versions is None else \
                f"this commit read versions {hop.commit_versions[0]}..{hop.commit_versions[1]}; "
            lines.append(f"  {'  ' * i}<- {hop.table}: {this}the table version covers "
                         f"versions up to {hop.upto}")
        lines.append(f"  {'  ' * len(self.hops)}<- Kafka {self.kafka_namespace}")
        lines += [f"rules in force: contract {r[CONTRACT_SHA256][:12]}, suite "
                  f"{r[SUITE_SHA256][:12]} (lakehouse audit rules prints them)" for r in self.rules]
        for title, ranges in (("Kafka offsets this commit added", self.commit_offsets),
                              ("Kafka offsets the whole version was built from",
                               self.version_offsets)):
            total = sum(r.records for r in ranges)
            lines.append(f"{title} (end exclusive): {total:,} records")
            lines += [f"  {r.range.topic} partition {r.range.partition}: {r.range.start}.."
                      f"{r.range.end} ({r.records:,} records)" for r in ranges]
        return "\n".join(lines)


def table_commits(uri: str, storage_options: dict[str, str]) -> dict[int, Commit]:
    """Every version of a table still in its log, with its commit metadata."""
    table = open_table(uri, storage_options)
    return {} if table is None else {v.version: v for v in versions(table)}


def input_table(pipeline: graph.Graph, query: str) -> str | None:
    """The table a silver or gold query reads (None if there is no such query)."""
    name = query.split(":", 1)[0]
    found = [q.input for q in pipeline.queries if q.name == name]
    return found[0] if found else None


def version_range(commits: dict[int, Commit], key: str, first: int, last: int
                  ) -> tuple[int, int] | None:
    """The input versions covered by the commits ``first..last`` (pure)."""
    spans = [recorded(c.metadata, key) for v, c in commits.items()
             if first <= v <= last and key in c.metadata]
    if not spans:
        return None
    return min(int(s["from"]) for s in spans), max(int(s["to"]) for s in spans)


def covered_upto(commits: dict[int, Commit], key: str, version: int) -> int | None:
    """The highest input version any commit up to ``version`` covers (pure)."""
    tops = [int(recorded(c.metadata, key)["to"]) for v, c in commits.items()
            if v <= version and key in c.metadata]
    return max(tops, default=None)


def offset_ranges(commits: dict[int, Commit], first: int, last: int) -> list[KafkaRecords]:
    """Per topic partition, the offsets bronze commits ``first..last`` hold (pure)."""
    acc: dict[tuple[str, int], tuple[int, int, int]] = {}
    for v, c in commits.items():
        if not first <= v <= last or KAFKA_OFFSETS not in c.metadata:
            continue
        for r in recorded(c.metadata, KAFKA_OFFSETS):
            k = (str(r["topic"]), int(r["partition"]))
            start, end = int(r["from"]), int(r["to"])
            low, high, n = acc.get(k, (start, end, 0))
            acc[k] = (min(low, start), max(high, end), n + int(r.get("records", end - start)))
    return [KafkaRecords(OffsetRange(t, p, s, e), n) for (t, p), (s, e, n) in sorted(acc.items())]


def rules_in(commits: dict[int, Commit], window: tuple[int, int] | None) -> list[dict[str, str]]:
    """The distinct rules in force the commits in ``window`` recorded (pure)."""
    found = {(c.metadata[CONTRACT_SHA256], c.metadata[SUITE_SHA256]) for v, c in commits.items()
             if window and window[0] <= v <= window[1] and CONTRACT_SHA256 in c.metadata}
    return [{CONTRACT_SHA256: contract, SUITE_SHA256: suite} for contract, suite in sorted(found)]


def explain(pipeline: graph.Graph, table: str, as_of: AsOf | None = None) -> Explanation:
    """Walk ``table`` back to Kafka offsets, as of a version, as of an instant (the
    version current then: what an auditor asks) or, by default, at its latest version."""
    config = pipeline.config
    layer, _ = split_name(table)
    require_tables(config, [table])
    opts = dict(config.warehouse.storage_options)
    commits = table_commits(table_uri(config, table), opts)
    if isinstance(as_of, datetime):
        version = resolve([commits[v] for v in sorted(commits)], as_of, table)
    elif as_of is None:
        version = max(commits, default=-1)
    else:
        version = as_of
    if version not in commits:
        raise LakehouseError(
            ErrorCode.LINEAGE_NO_VERSION, f"{table} has no version {version} in its log",
            hint=f"versions kept: {min(commits)}..{max(commits)}" if commits else "",
            table=table, version=version)
    top = commits[version]
    key = INPUT_KEY[layer]
    if key not in top.metadata:
        with_inputs = [v for v, c in sorted(commits.items()) if key in c.metadata]
        raise LakehouseError(
            ErrorCode.LINEAGE_NOT_A_BATCH,
            f"{table} version {version} ({top.operation}) was not written by a pipeline "
            "batch, so it records no input range",
            hint="versions with input ranges: "
                 + (", ".join(map(str, with_inputs[-10:])) or "none yet"),
            table=table, version=version)
    query = top.metadata.get("lakehouse.query")
    hops = [Hop(table, None, version)]
    current, current_layer, commits_now = table, layer, commits
    window: tuple[int, int] | None = (version, version)
    upto = version
    rules: list[dict[str, str]] = []
    while current_layer != "bronze":
        if current_layer == "silver":
            rules = rules_in(commits_now, window)
        below = input_table(pipeline, str(query or current))
        if below is None:
            raise LakehouseError(ErrorCode.LINEAGE_NOT_A_BATCH,
                                 f"cannot tell which table {current} reads",
                                 hint="is its definition still in silver/ or gold/?")
        key = INPUT_KEY[current_layer]
        window = None if window is None else version_range(commits_now, key, *window)
        found = covered_upto(commits_now, key, upto)
        upto = -1 if found is None else found
        hops.append(Hop(below, window, upto))
        current, current_layer = below, split_name(below)[0]
        commits_now = table_commits(pipeline.node(current).uri, opts)
        query = current
    commit_offsets = offset_ranges(commits_now, *window) if window else []
    version_offsets = offset_ranges(commits_now, 0, upto)
    return Explanation(
        table, version, top.operation, top.at.isoformat().replace("+00:00", "Z"),
        top.metadata.get(RUN_ID), top.metadata.get(QUERY_RUN_ID),
        top.metadata.get("lakehouse.batch_id"), top.metadata.get("lakehouse.query"), hops,
        kafka_dataset(config.kafka.bootstrap_servers, "").namespace,
        commit_offsets, version_offsets, rules)
