"""The two operations that change what time travel can see: ``restore`` (a new version
with an earlier one's contents, which keeps the one it replaced) and ``vacuum`` (deletes
the files of versions older than the retention, never inside the audit horizon but for
an erasure, never those a streaming reader has not read yet). Both run on delta-spark and take
a ``SparkSession``, or build the project's one if none is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lakehouse import graph
from lakehouse.audit.timetravel import (
    AsOf,
    Version,
    open_latest,
    open_version,
    resolve,
    versions,
)
from lakehouse.batch import BRONZE_VERSIONS, RUN_ID, SILVER_VERSIONS
from lakehouse.catalog import table_uri
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta import restore_version, vacuum_files
from lakehouse.io.delta_log import commit_metadata, find_commit, open_table
from lakehouse.io.storage import exists, join

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_session(config: Config, spark: SparkSession | None) -> SparkSession:
    """``spark``, else the project's session (created on first use, reused after)."""
    if spark is not None:
        return spark
    from lakehouse.spark import build_session
    return build_session(config)


# -- restore -------------------------------------------------------------------------------

RESTORED_TO = "lakehouse.restored_to"
RESTORED_FROM = "lakehouse.restored_from"
REASON = "lakehouse.reason"


@dataclass(frozen=True)
class Restored:
    """What a restore did."""

    table: str
    target: int
    previous: int
    version: int
    """The new version: the target's contents, committed on top."""


def restore(config: Config, table: str, target: AsOf, reason: str = "",
            spark: SparkSession | None = None) -> Restored:
    """Make ``target``'s contents the table's current version: a RESTORE commit by
    delta-spark whose ``userMetadata`` records what it restored, from which version, why,
    and the run id. ``spark``: the session to run it on (default: the project's)."""
    from openlineage.client.uuid import generate_new_uuid
    dt = open_latest(config, table)
    previous = dt.version()
    log = versions(dt)
    version = resolve(log, target, table)
    if version == previous:
        raise LakehouseError(ErrorCode.TIME_NO_VERSION,
                             f"{table} is at version {version} already; nothing to restore",
                             table=table, version=version)
    open_version(config, table, dt, version, log)  # its files must still be there
    run_id = str(generate_new_uuid())
    metadata = {RESTORED_TO: version, RESTORED_FROM: previous, REASON: reason, RUN_ID: run_id}
    uri = table_uri(config, table)
    session = spark_session(config, spark)
    try:
        restore_version(session, uri, version, metadata)
    except Exception as exc:
        raise LakehouseError(
            ErrorCode.DELTA_WRITE_FAILED,
            f"restoring {table} to version {version} failed: {_first_line(exc)}",
            hint=f"the table is unchanged unless lakehouse history {table} shows a RESTORE",
            table=table, version=version) from exc
    done = find_commit(uri, previous, lambda actions: any(
        commit_metadata(a["commitInfo"]).get(RUN_ID) == run_id
        for a in actions if "commitInfo" in a))
    return Restored(table, version, previous, done.version or previous + 1)


# -- vacuum --------------------------------------------------------------------------------

CLOCK_MARGIN_SECONDS = 60.0
"""Kept on top of the age of the last version the streaming readers have read: Delta's
vacuum reads its clock a little after ours, and commit times come from the writers'."""


@dataclass(frozen=True)
class Vacuumed:
    """What vacuuming one table did (or would do, in a dry run)."""

    table: str
    files: list[str]
    """The files removed (or that would be), relative to the table's location."""
    kept_versions: list[int]
    """Versions whose files were kept because a streaming reader has not read them yet."""
    dry_run: bool


def unread_versions(pipeline: graph.Graph, table: str, log: Sequence[Version]) -> list[int]:
    """Versions of ``table`` a downstream streaming query has not processed yet (silver
    reads bronze, gold reads silver), per the input ranges their commits record."""
    config = pipeline.config
    from lakehouse.observe.freshness import coverings
    from lakehouse.registry import GoldTable
    wh, opts = config.warehouse, dict(config.warehouse.storage_options)
    readers = []
    for q in pipeline.downstream(table):
        key = BRONZE_VERSIONS if q.layer == graph.Layer.SILVER else SILVER_VERSIONS
        readers += [(pipeline.node(q.name).uri, key)]
        if isinstance(q.definition, GoldTable):  # two-stage: its state commits last
            readers += [(wh.table_uri(q.layer, q.definition.state_name), key)]
    if not readers:
        return []
    done = [max((c.last for c in coverings(uri, key, opts)), default=-1) for uri, key in readers
            if open_table(uri, opts) is not None]
    if not done:
        return []
    return [v.version for v in log if v.version > min(done)]


def effective_retention(hours: float, log: Sequence[Version], unread: Sequence[int],
                        now: datetime) -> int | None:
    """The retention, in whole hours, to vacuum with: ``hours``, made longer if a
    streaming reader has versions left to read (pure).

    A reader of the change feed of an unread version needs the files that version wrote
    and removed, and those were written or removed after the last version the readers
    have read was committed: the retention reaches back to that commit (and
    ``CLOCK_MARGIN_SECONDS`` more). Delta counts a vacuum's retention in whole hours (it
    rounds what it is given): rounded up here, so at least that much is kept. None: the
    readers have read none of the versions in the log, so every file is kept."""
    wanted = max(0.0, hours)
    if unread:
        read = [v for v in log if v.version < min(unread)]
        if not read:
            return None
        age = (now - read[-1].at).total_seconds() + CLOCK_MARGIN_SECONDS
        wanted = max(wanted, age / 3600)
    return math.ceil(wanted)


def vacuum(pipeline: graph.Graph, table: str, retention_hours: float | None, *,
           erasure: bool = False, dry_run: bool = False,
           spark: SparkSession | None = None) -> Vacuumed:
    """Delete, with delta-spark, the data files no version younger than the retention
    still needs (default: the audit horizon, and never shorter, except for ``erasure``:
    ``lakehouse forget``), and the files of versions a streaming reader has not read yet
    never. ``dry_run``: list them only. The retention is counted in whole hours, rounded up
    (Delta's unit). ``spark``: the session to run it on (default: the project's)."""
    config = pipeline.config
    horizon = config.retention.horizon_hours
    hours = horizon if retention_hours is None else retention_hours
    if hours < horizon and not erasure:
        raise LakehouseError(
            ErrorCode.INSIDE_AUDIT_HORIZON,
            f"a retention of {hours:g} h would remove versions inside the audit horizon "
            f"({config.retention.audit_horizon_days:g} days, retention.audit_horizon_days in "
            f"{config.source_file})",
            hint="auditors rely on reading every table that far back; a longer retention "
                 "vacuums less, `lakehouse forget` is the one erasure", table=table)
    log = versions(open_latest(config, table))
    keep = unread_versions(pipeline, table, log)
    if effective_retention(hours, log, keep, datetime.now(UTC)) is None:
        return Vacuumed(table, [], keep, dry_run)

    def retention() -> int:  # from the clock just before each call
        return effective_retention(hours, log, keep, datetime.now(UTC)) or 0

    uri = table_uri(config, table)
    session = spark_session(config, spark)
    try:
        files = vacuum_files(session, uri, retention, dry_run)
    except Exception as exc:
        raise LakehouseError(ErrorCode.DELTA_WRITE_FAILED,
                             f"vacuuming {table} failed: {_first_line(exc)}",
                             table=table) from exc
    if files and not dry_run:  # what is gone (the clock moved on)
        files = [f for f in files if not exists(join(uri, f))]
    return Vacuumed(table, sorted(files), keep, dry_run)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the audit horizon ---------------------------------------------------------------------

@dataclass(frozen=True)
class Horizon:
    """How far back one table can be read, from its log."""

    table: str
    oldest_version: int
    """The oldest version still in the log."""
    oldest_readable: int
    """The oldest version every file of which is still kept: the one current when the
    last vacuum's retention began (the oldest in the log if never vacuumed)."""
    readable_since: datetime
    last_vacuum: datetime | None
    retention_kept: bool
    """The table's Delta retention properties are the horizon's."""

    def row(self) -> dict[str, Any]:
        return {"table": self.table, "oldest_version": self.oldest_version,
                "oldest_readable_version": self.oldest_readable,
                "readable_since": self.readable_since, "last_vacuum": self.last_vacuum,
                "retention": "horizon" if self.retention_kept
                else "differs (the next lakehouse run sets it)"}


def retained_ms(commit: Mapping[str, Any]) -> int:
    """The retention a VACUUM START commit kept, in milliseconds: 0 for an erasure (pure)."""
    params = commit.get("operationParameters") or {}
    retained = params.get("specifiedRetentionMillis")
    if retained is None:
        retained = params.get("defaultRetentionMillis", 0)
    return int(retained)


def oldest_readable(log: Sequence[Version]) -> Version:
    """The oldest version of ``log`` whose files the last VACUUM kept (pure): it deleted
    only files removed before its retention began, so the version current then, and every
    later one, is whole."""
    vacuums = [v for v in log if v.operation == "VACUUM START"]
    if not vacuums:
        return log[0]
    began = vacuums[-1].at - timedelta(milliseconds=retained_ms(vacuums[-1].metadata))
    before = [v for v in log if v.at < began]
    return before[-1] if before else log[0]


def horizon(config: Config, table: str) -> Horizon:
    """``lakehouse audit horizon`` for one table."""
    dt = open_latest(config, table)
    log = versions(dt)
    readable = oldest_readable(log)
    vacuums = [v.at for v in log if v.operation == "VACUUM START"]
    current = dt.metadata().configuration
    kept = all(current.get(k) == v for k, v in config.retention.delta_properties.items())
    return Horizon(table, log[0].version, readable.version, readable.at,
                   vacuums[-1] if vacuums else None, kept)
