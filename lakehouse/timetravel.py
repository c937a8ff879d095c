"""Time travel for auditors: a table's history, any table as of a version or an instant,
the difference between two versions by key, and restoring an earlier version.

Everything reads the Delta log through delta-rs; ``restore`` is the only write, and it
is itself a new version (time travel keeps the one it replaced).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable

from lakehouse.catalog import require_tables, split_name
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta import MERGE_KEYS, open_table
from lakehouse.lineage.datasets import (
    BRONZE_VERSIONS,
    KAFKA_OFFSETS,
    QUERY_RUN_ID,
    RUN_ID,
    SILVER_VERSIONS,
)

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


def versions(dt: DeltaTable) -> list[Version]:
    """The versions still in a table's log, oldest first."""
    out = [Version(int(c["version"]), datetime.fromtimestamp(int(c["timestamp"]) / 1000, UTC),
                   str(c.get("operation", "")), c) for c in dt.history()]
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


def open_as_of(config: Config, table: str, as_of: AsOf | None) -> DeltaTable:
    """``layer.name`` as it was at ``as_of`` (latest if None)."""
    uri = config.warehouse.table_uri(*split_name(table))
    dt = open_table(uri, config.warehouse.storage_options)
    if dt is None:
        require_tables(config, [table])
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND, f"no Delta table at {uri}")
    if as_of is None:
        return dt
    log = versions(dt)
    version = resolve(log, as_of, table)
    if version != dt.version():
        dt = DeltaTable(uri, version=version,
                        storage_options=dict(config.warehouse.storage_options) or None)
    missing = [f for f in dt.file_uris() if "://" not in f and not Path(f).exists()]
    if missing:
        raise LakehouseError(
            ErrorCode.TIME_VACUUMED,
            f"{table} version {version} can no longer be read: {len(missing)} of its "
            f"{len(dt.file_uris())} data files were removed by VACUUM",
            hint=f"versions younger than the audit window "
                 f"({config.retention.audit_window_hours:g} h) are kept by lakehouse vacuum; "
                 f"the latest version is {log[-1].version}", table=table, version=version)
    return dt


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- history -------------------------------------------------------------------------------

HISTORY_SCHEMA = pa.schema([
    ("version", pa.int64()), ("committed_at", pa.timestamp("ms", tz="UTC")),
    ("operation", pa.string()), ("rows_added", pa.int64()), ("rows_updated", pa.int64()),
    ("rows_removed", pa.int64()), ("batch_id", pa.int64()), ("run_id", pa.string()),
    ("query", pa.string()), ("input", pa.string()),
])


def row_counts(operation: str, metrics: Mapping[str, Any]) -> tuple[int | None, int | None,
                                                                     int | None]:
    """(added, updated, removed) rows of one commit from its operation metrics (pure)."""
    def get(*keys: str) -> int | None:
        values = [metrics[k] for k in keys if k in metrics]
        return sum(int(v) for v in values) if values else None

    if operation == "MERGE":
        return (get("num_target_rows_inserted"), get("num_target_rows_updated"),
                get("num_target_rows_deleted"))
    if operation in ("DELETE", "UPDATE"):
        return None, get("num_updated_rows"), get("num_deleted_rows")
    return get("num_added_rows"), None, get("num_removed_rows")


def input_range(metadata: Mapping[str, Any]) -> str | None:
    """What a commit was built from, in one short string (pure)."""
    for key, label in ((SILVER_VERSIONS, "silver"), (BRONZE_VERSIONS, "bronze")):
        if key in metadata:
            span = metadata[key]
            span = json.loads(span) if isinstance(span, str) else span
            return f"{label} v{span['from']}..{span['to']}"
    if KAFKA_OFFSETS in metadata:
        ranges = metadata[KAFKA_OFFSETS]
        ranges = json.loads(ranges) if isinstance(ranges, str) else ranges
        return f"kafka {sum(int(r['to']) - int(r['from']) for r in ranges):,} offsets " \
               f"in {len(ranges)} partitions"
    if "lakehouse.restored_to" in metadata:
        return f"restored to v{metadata['lakehouse.restored_to']}"
    return None


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
                     "input": input_range(v.metadata)})
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
             and any(_norm(old_rows[k].get(c)) != _norm(new_rows[k].get(c)) for c in compared)]
    moved = [c for c in compared if any(_norm(a.get(c)) != _norm(b.get(c)) for a, b in pairs)]
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
        key = tuple(_norm(row[k]) for k in keys) if keys else \
            tuple(sorted((c, repr(_norm(v))) for c, v in row.items()))
        out[key] = row
    return out


def _norm(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_norm(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _norm(v)) for k, v in value.items()))
    return value


def table_keys(config: Config, table: str, log: Sequence[Version]) -> list[str]:
    """The columns that identify a row of ``table``: Kafka coordinates in bronze and
    quarantine, the contract key in silver, the merge keys gold's commits record."""
    layer, name = split_name(table)
    if layer == "bronze":
        return ["topic", "partition", "offset"]
    if layer == "silver":
        from lakehouse.registry import discover_silver
        from lakehouse.silver import load_plan
        for t in discover_silver():
            if name == t.name:
                return [load_plan(config, t).key]
            if name == t.quarantine_name:
                return list(COORDINATES)
        return []
    recorded = [v.metadata[MERGE_KEYS] for v in reversed(log) if MERGE_KEYS in v.metadata]
    if not recorded:
        return []
    keys = recorded[0]
    return list(json.loads(keys) if isinstance(keys, str) else keys)


def diff(config: Config, table: str, old: AsOf, new: AsOf) -> tuple[TableDiff, int, int]:
    """``lakehouse diff``: the two versions compared by the table's key."""
    latest = open_as_of(config, table, None)
    log = versions(latest)
    first, second = resolve(log, old, table), resolve(log, new, table)
    uri = config.warehouse.table_uri(*split_name(table))
    opts = dict(config.warehouse.storage_options) or None
    before = DeltaTable(uri, version=first, storage_options=opts).to_pyarrow_table()
    after = DeltaTable(uri, version=second, storage_options=opts).to_pyarrow_table()
    return diff_tables(before, after, table_keys(config, table, log)), first, second


# -- restore -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Restored:
    """What a restore did."""

    table: str
    target: int
    previous: int
    version: int
    """The new version: the target's contents, committed on top."""


def restore(config: Config, table: str, target: AsOf, reason: str = "") -> Restored:
    """Make ``target``'s contents the table's current version (a new RESTORE commit that
    records what it restored, from which version, and why)."""
    dt = open_as_of(config, table, None)
    previous = dt.version()
    version = resolve(versions(dt), target, table)
    if version == previous:
        raise LakehouseError(ErrorCode.TIME_NO_VERSION,
                             f"{table} is at version {version} already; nothing to restore",
                             table=table, version=version)
    from openlineage.client.uuid import generate_new_uuid
    dt.restore(version, commit_properties=CommitProperties(custom_metadata={
        "lakehouse.restored_to": version, "lakehouse.restored_from": previous,
        "lakehouse.reason": reason, RUN_ID: str(generate_new_uuid())}))
    dt.update_incremental()
    return Restored(table, version, previous, dt.version())


# -- vacuum --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Vacuumed:
    """What vacuuming one table did (or would do, in a dry run)."""

    table: str
    files: list[str]
    kept_versions: list[int]
    """Versions whose files were kept because a streaming reader has not read them yet."""
    dry_run: bool


def unread_versions(config: Config, table: str, log: Sequence[Version]) -> list[int]:
    """Versions of ``table`` a downstream streaming query has not processed yet (silver
    reads bronze, gold reads silver), per the input ranges their commits record."""
    from lakehouse.freshness import coverings
    from lakehouse.registry import discover_gold, discover_silver
    layer, name = split_name(table)
    wh, opts = config.warehouse, dict(config.warehouse.storage_options)
    if layer == "bronze":
        readers = [(wh.table_uri("silver", t.name), BRONZE_VERSIONS)
                   for t in discover_silver() if t.bronze == name]
    elif layer == "silver":
        readers = [(wh.table_uri("gold", t.state_name), SILVER_VERSIONS)
                   for t in discover_gold() if t.silver == name] + \
                  [(wh.table_uri("gold", t.name), SILVER_VERSIONS)
                   for t in discover_gold() if t.silver == name]
    else:
        return []
    done = [max((c.last for c in coverings(uri, key, opts)), default=-1) for uri, key in readers
            if open_table(uri, opts) is not None]
    if not done:
        return []
    return [v.version for v in log if v.version > min(done)]


def vacuum(config: Config, table: str, retention_hours: float | None, *, force: bool = False,
           dry_run: bool = False) -> Vacuumed:
    """Delete the data files no version younger than the retention still needs, keeping
    versions inside the audit window unless ``force``, and versions a streaming reader
    has not read yet always."""
    window = config.retention.audit_window_hours
    hours = window if retention_hours is None else retention_hours
    if hours < window and not force:
        raise LakehouseError(
            ErrorCode.TIME_INSIDE_AUDIT_WINDOW,
            f"a retention of {hours:g} h would remove versions younger than the audit window "
            f"({window:g} h, retention.audit_window_hours in {config.source_file})",
            hint="auditors could no longer read those versions; pass --force if that is "
                 "really meant", table=table)
    dt = open_as_of(config, table, None)
    keep = unread_versions(config, table, versions(dt))
    files = dt.vacuum(retention_hours=max(0, round(hours)), dry_run=dry_run,
                      enforce_retention_duration=False, keep_versions=keep or None)
    return Vacuumed(table, sorted(files), keep, dry_run)
