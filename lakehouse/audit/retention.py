"""The two operations that change what time travel can see: ``restore`` (a new version
with an earlier one's contents, which keeps the one it replaced) and ``vacuum`` (deletes
the files of versions older than the retention, never inside the audit window unless
forced, never those a streaming reader has not read yet). Both run on delta-spark and take
a ``SparkSession``, or build the project's one if none is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

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


def _session(config: Config, spark: SparkSession | None) -> SparkSession:
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
    session = _session(config, spark)
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


def vacuum(pipeline: graph.Graph, table: str, retention_hours: float | None, *, force: bool = False,
           dry_run: bool = False, spark: SparkSession | None = None) -> Vacuumed:
    """Delete, with delta-spark, the data files no version younger than the retention
    still needs, keeping versions inside the audit window unless ``force``, and the files
    of versions a streaming reader has not read yet always. ``dry_run``: list them only.
    The retention is counted in whole hours, rounded up (Delta's unit).
    ``spark``: the session to run it on (default: the project's)."""
    config = pipeline.config
    window = config.retention.audit_window_hours
    hours = window if retention_hours is None else retention_hours
    if hours < window and not force:
        raise LakehouseError(
            ErrorCode.TIME_INSIDE_AUDIT_WINDOW,
            f"a retention of {hours:g} h would remove versions younger than the audit window "
            f"({window:g} h, retention.audit_window_hours in {config.source_file})",
            hint="auditors could no longer read those versions; pass --force if that is "
                 "really meant", table=table)
    log = versions(open_latest(config, table))
    keep = unread_versions(pipeline, table, log)
    if effective_retention(hours, log, keep, datetime.now(UTC)) is None:
        return Vacuumed(table, [], keep, dry_run)

    def retention() -> int:  # from the clock just before each call
        return effective_retention(hours, log, keep, datetime.now(UTC)) or 0

    uri = table_uri(config, table)
    session = _session(config, spark)
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
