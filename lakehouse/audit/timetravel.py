"""Time travel for auditors: a table's history, any table as of a version or an instant,
and the difference between two versions by key, all read by delta-rs, with no JVM; commit
metadata is read with ``lakehouse.io.delta_log.history`` (the project's keys live in each
commit's ``userMetadata``). Restore and vacuum, which write, are in ``retention``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from lakehouse import graph
from lakehouse.batch import BRONZE_VERSIONS, KAFKA_OFFSETS, QUERY_RUN_ID, RUN_ID, SILVER_VERSIONS
from lakehouse.catalog import require_tables, table_uri
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta_log import MERGE_KEYS, RsTable, open_table
from lakehouse.io.delta_log import history as commit_history
from lakehouse.io.storage import missing
from lakehouse.quality.in_force import CONTRACT_SHA256, SUITE_SHA256

AsOf = int | datetime
"""A table version, or an instant (aware, UTC)."""


def parse_as_of(text: str) -> AsOf:
    """``12`` -> version 12; ISO-8601 -> an instant (naive means UTC) (pure)."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise LakehouseError(
            ErrorCode.TIME_BAD_AS_OF, f"{text!r} is neither a version nor an ISO-8601 time",
            hint="e.g. --as-of 12, --as-of 2026-11-20T18:00:00Z or --as-of '2026-11-20 18:00' "
                 "(naive times are UTC)") from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Version:
    """One entry of a table's log."""

    version: int
    at: datetime
    operation: str
    metadata: Mapping[str, Any]


def versions(dt: RsTable) -> list[Version]:
    """The versions still in a table's log, oldest first, each with its commit metadata
    (``commitInfo`` and the project's keys from its ``userMetadata``)."""
    out = [Version(int(c["version"]), datetime.fromtimestamp(int(c["timestamp"]) / 1000, UTC),
                   str(c.get("operation", "")), c) for c in commit_history(dt)]
    return sorted(out, key=lambda v: v.version)


def resolve(log: Sequence[Version], as_of: AsOf, table: str) -> int:
    """The version ``as_of`` names: that version, or the last one committed at or
    before the instant; an error if the log has no such version (pure)."""
    if not log:
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND, f"{table} has no versions")
    kept = f"{table} keeps versions {log[0].version}..{log[-1].version} " \
           f"({_iso(log[0].at)} .. {_iso(log[-1].at)})"
    if isinstance(as_of, int):
        if not any(v.version == as_of for v in log):
            raise LakehouseError(ErrorCode.TIME_NO_VERSION, f"{table} has no version {as_of}",
                                 hint=kept, table=table, version=as_of)
        return as_of
    before = [v for v in log if v.at <= as_of]
    if not before:
        raise LakehouseError(
            ErrorCode.TIME_NO_VERSION, f"{table} has no version at {_iso(as_of)}: its first "
            f"kept version is from {_iso(log[0].at)}", hint=kept, table=table)
    return before[-1].version


def open_as_of(config: Config, table: str, as_of: AsOf | None) -> RsTable:
    """``layer.name`` as it was at ``as_of`` (latest if None)."""
    dt = open_latest(config, table)
    if as_of is None:
        return dt
    log = versions(dt)
    return open_version(config, table, dt, resolve(log, as_of, table), log)


def open_latest(config: Config, table: str) -> RsTable:
    uri = table_uri(config, table)
    dt = open_table(uri, config.warehouse.storage_options)
    if dt is None:
        require_tables(config, [table])
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND, f"no Delta table at {uri}")
    return dt


def open_version(config: Config, table: str, latest: RsTable, version: int,
                  log: Sequence[Version]) -> RsTable:
    """The table at ``version`` (in ``log``), or TIME_VACUUMED if its files are gone."""
    dt = latest if version == latest.version() else open_table(
        table_uri(config, table), config.warehouse.storage_options, version=version)
    assert dt is not None
    gone = missing(dt.file_uris())
    if gone:
        raise LakehouseError(
            ErrorCode.TIME_VACUUMED,
            f"{table} version {version} can no longer be read: {len(gone)} of its "
            f"{len(dt.file_uris())} data files were removed by VACUUM",
            hint=f"versions inside the audit horizon "
                 f"({config.retention.audit_horizon_days:g} days) are kept by lakehouse vacuum; "
                 f"the latest version is {log[-1].version}", table=table, version=version)
    return dt


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- history -------------------------------------------------------------------------------

HISTORY_SCHEMA = pa.schema([
    ("version", pa.int64()), ("committed_at", pa.timestamp("ms", tz="UTC")),
    ("operation", pa.string()), ("rows_added", pa.int64()), ("rows_updated", pa.int64()),
    ("rows_removed", pa.int64()), ("batch_id", pa.int64()), ("run_id", pa.string()),
    ("query", pa.string()), ("input", pa.string()), ("rules", pa.string()),
])


def row_counts(operation: str, metrics: Mapping[str, Any]) -> tuple[int | None, int | None,
                                                                     int | None]:
    """(added, updated, removed) rows of one commit from its operation metrics (pure).

    Reads delta-spark's metrics (``numTargetRowsInserted``, ``numOutputRows``, ...) and
    those of commits delta-rs wrote before (``num_target_rows_inserted``, ...)."""
    def get(*keys: str) -> int | None:  # the first name the commit has: one engine's metric
        return next((int(metrics[k]) for k in keys if metrics.get(k) is not None), None)

    if operation == "MERGE":
        return (get("numTargetRowsInserted", "num_target_rows_inserted"),
                get("numTargetRowsUpdated", "num_target_rows_updated"),
                get("numTargetRowsDeleted", "num_target_rows_deleted"))
    if operation in ("DELETE", "UPDATE"):
        return (None, get("numUpdatedRows", "num_updated_rows"),
                get("numDeletedRows", "num_deleted_rows"))
    return (get("numOutputRows", "num_added_rows"), None,
            get("numDeletedRows", "num_removed_rows"))


def recorded(metadata: Mapping[str, Any], key: str) -> Any:
    """What a commit recorded under ``key`` (None if nothing), JSON text decoded (pure)."""
    value = metadata.get(key)
    return json.loads(value) if isinstance(value, str) else value


def input_range(metadata: Mapping[str, Any]) -> str | None:
    """What a commit was built from, in one short string (pure)."""
    for key, label in ((SILVER_VERSIONS, "silver"), (BRONZE_VERSIONS, "bronze")):
        if key in metadata:
            span = recorded(metadata, key)
            return f"{label} v{span['from']}..{span['to']}"
    if KAFKA_OFFSETS in metadata:
        ranges = recorded(metadata, KAFKA_OFFSETS)
        return f"kafka {sum(int(r['to']) - int(r['from']) for r in ranges):,} offsets " \
               f"in {len(ranges)} partitions"
    if "lakehouse.restored_to" in metadata:
        return f"restored to v{metadata['lakehouse.restored_to']}"
    return None


def rules_recorded(metadata: Mapping[str, Any]) -> str | None:
    """The rules a silver-side commit applied, short (pure)."""
    if CONTRACT_SHA256 not in metadata:
        return None
    return f"contract {metadata[CONTRACT_SHA256][:12]} suite {metadata[SUITE_SHA256][:12]}"


def history_table(log: Sequence[Version]) -> pa.Table:
    """A table's versions, newest first, as rows for ``lakehouse history`` (pure)."""
    rows = []
    for v in reversed(log):
        metrics = v.metadata.get("operationMetrics") or {}
        added, updated, removed = row_counts(v.operation, metrics)
        batch = v.metadata.get("lakehouse.batch_id")
        rows.append({"version": v.version, "committed_at": v.at, "operation": v.operation,
                     "rows_added": added, "rows_updated": updated, "rows_removed": removed,
                     "batch_id": None if batch is None else int(batch),
                     "run_id": v.metadata.get(RUN_ID) or v.metadata.get(QUERY_RUN_ID),
                     "query": v.metadata.get("lakehouse.query"),
                     "input": input_range(v.metadata), "rules": rules_recorded(v.metadata)})
    return pa.Table.from_pylist(rows, HISTORY_SCHEMA)


def history(config: Config, table: str) -> pa.Table:
    """``lakehouse history <table>``."""
    return history_table(versions(open_as_of(config, table, None)))


# -- diff ----------------------------------------------------------------------------------

COORDINATES = ["_topic", "_partition", "_offset"]


@dataclass(frozen=True)
class TableDiff:
    """Rows added, removed and changed (same key, other values) between two versions."""

    keys: list[str]
    added: pa.Table
    removed: pa.Table
    changed: pa.Table
    """One row per changed key: the key, then ``<column>`` (new) and ``<column>__was``
    for every column whose value changed in any row."""

    def describe(self, table: str, old: int, new: int) -> str:
        """One summary line."""
        by = ", ".join(self.keys) if self.keys else "whole rows (the table has no key)"
        return (f"{table} v{old} -> v{new} by {by}: {self.added.num_rows:,} added, "
                f"{self.removed.num_rows:,} removed, {self.changed.num_rows:,} changed")


def diff_tables(old: pa.Table, new: pa.Table, keys: Sequence[str],
                ignore: Sequence[str] = ("updated_at",)) -> TableDiff:
    """Compare two versions of a table by ``keys`` (whole rows if none) (pure).

    Columns in ``ignore`` (bookkeeping such as ``updated_at``) do not make a row changed.
    """
    old_rows = _by_key(old, keys)
    new_rows = _by_key(new, keys)
    added = [new_rows[k] for k in new_rows if k not in old_rows]
    removed = [old_rows[k] for k in old_rows if k not in new_rows]
    compared = [c for c in new.column_names if c not in keys and c not in ignore]
    pairs = [(old_rows[k], new_rows[k]) for k in new_rows if k in old_rows
             and any(normalised(old_rows[k].get(c)) != normalised(new_rows[k].get(c)) for c in compared)]
    moved = [c for c in compared if any(normalised(a.get(c)) != normalised(b.get(c)) for a, b in pairs)]
    changed = [{**{k: b[k] for k in keys}, **{c: b[c] for c in moved},
                **{f"{c}__was": a.get(c) for c in moved}} for a, b in pairs]
    schema = pa.schema([new.schema.field(k) for k in keys]
                       + [new.schema.field(c) for c in moved]
                       + [new.schema.field(c).with_name(f"{c}__was") for c in moved])
    return TableDiff(list(keys), pa.Table.from_pylist(added, new.schema),
                     pa.Table.from_pylist(removed, old.schema),
                     pa.Table.from_pylist(changed, schema))


def _by_key(data: pa.Table, keys: Sequence[str]) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    for row in data.to_pylist():
        key = tuple(normalised(row[k]) for k in keys) if keys else \
            tuple(sorted((c, repr(normalised(v))) for c, v in row.items()))
        out[key] = row
    return out


def normalised(value: Any) -> Any:
    """``value`` as rows compare it: a decimal without trailing zeros, lists and maps as
    tuples (hashable) (pure)."""
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, list):
        return tuple(normalised(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, normalised(v)) for k, v in value.items()))
    return value


def table_keys(pipeline: graph.Graph, table: str, log: Sequence[Version]) -> list[str]:
    """The columns that identify a row of ``table``: Kafka coordinates in bronze and
    quarantine, the contract key in silver, the merge keys gold's commits record."""
    known = {n.name: n for n in pipeline.nodes}
    if table in known and known[table].keys:
        return list(known[table].keys)
    merges = [v.metadata for v in reversed(log) if MERGE_KEYS in v.metadata]
    return list(recorded(merges[0], MERGE_KEYS)) if merges else []


def diff(pipeline: graph.Graph, table: str, old: AsOf, new: AsOf) -> tuple[TableDiff, int, int]:
    """``lakehouse diff``: the two versions compared by the table's key."""
    config = pipeline.config
    latest = open_as_of(config, table, None)
    log = versions(latest)
    first, second = resolve(log, old, table), resolve(log, new, table)
    before = open_version(config, table, latest, first, log).to_pyarrow_table()
    after = open_version(config, table, latest, second, log).to_pyarrow_table()
    return diff_tables(before, after, table_keys(pipeline, table, log)), first, second
