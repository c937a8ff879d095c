"""The Delta log read without a JVM (delta-rs and the log's JSON): versions, commits and
their metadata, which batch each writer committed last, what a range of versions holds.

Every project commit records who wrote it and which batch (``lakehouse.app_id`` and
``lakehouse.batch_id`` in ``userMetadata``, with the batch's provenance, which
``commit_metadata`` reads back). ``last_batch`` answers from the log entries committed
since it last looked (``BatchMarks``), not from Delta's transaction state: delta-spark 4.4
rebuilds a snapshot's whole state with a Spark job to answer ``txnAppId``/``txnVersion``
(``SnapshotState.setTransactions``), about 0.6 s on every commit here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs
from deltalake import DeltaTable as RsTable
from deltalake.exceptions import TableNotFoundError

from lakehouse.io.storage import filesystem, join

MERGE_KEYS = "lakehouse.keys"
"""Commit metadata of every MERGE: the key columns, so tools can compare versions by key."""
APP_ID = "lakehouse.app_id"
BATCH_ID = "lakehouse.batch_id"


@dataclass(frozen=True)
class BatchCommit:
    """Who commits (the Delta transaction app id and the batch id) and what the commit
    records about itself."""

    app_id: str
    batch_id: int
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def user_metadata(self) -> str:
        """The commit's ``userMetadata``: app id, batch id and the given metadata, JSON."""
        return json.dumps({APP_ID: self.app_id, BATCH_ID: self.batch_id, **self.metadata},
                          sort_keys=True, default=str)

    def with_metadata(self, **more: Any) -> BatchCommit:
        """The same commit identity with more metadata."""
        return BatchCommit(self.app_id, self.batch_id, {**self.metadata, **more})


@dataclass(frozen=True)
class WriteResult:
    """What one idempotent write did."""

    version: int | None
    """The version it committed; None if it committed nothing (already in the table)."""
    rows: int
    """Rows the commit wrote (its ``numOutputRows`` / inserted + updated + deleted)."""
    metrics: Mapping[str, str] = field(default_factory=dict)

    @property
    def written(self) -> bool:
        """Whether this call committed a new version."""
        return self.version is not None


# -- reading the log without a JVM ---------------------------------------------------------

def open_table(uri: str, storage_options: Mapping[str, str] | None = None,
               version: int | None = None) -> RsTable | None:
    """The Delta table at ``uri`` read by delta-rs, or None if there is none yet."""
    try:
        return RsTable(uri, version=version, storage_options=dict(storage_options or {}))
    except TableNotFoundError:
        return None


def commit_metadata(commit: Mapping[str, Any]) -> dict[str, Any]:
    """A commit's ``commitInfo`` with the project's keys from its ``userMetadata`` merged
    in (``lakehouse.batch_id``, the input ranges, run ids, ...)."""
    out = dict(commit)
    raw = commit.get("userMetadata")
    if isinstance(raw, str) and raw.startswith("{"):
        with suppress(json.JSONDecodeError):
            out.update(json.loads(raw))
    return out


def history(table: RsTable) -> list[dict[str, Any]]:
    """Every commit of the table, newest first, with ``commit_metadata`` applied."""
    return [commit_metadata(c) for c in table.history()]


def _log_dir(uri: str) -> tuple[pafs.FileSystem, str]:
    return filesystem(join(uri, "_delta_log"))


def latest_version(uri: str) -> int | None:
    """The newest version in the table's log (a listing, no log replay); None if none."""
    fs, path = _log_dir(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError:
        return None
    versions = [int(i.base_name[:20]) for i in infos
                if i.base_name.endswith(".json") and i.base_name[:20].isdigit()]
    return max(versions, default=None)


def log_bytes(uri: str, version: int) -> bytes | None:
    """One commit's log file as stored; None if the log no longer holds it."""
    fs, path = _log_dir(uri)
    try:
        with fs.open_input_stream(f"{path}/{version:020d}.json") as stream:
            return bytes(stream.read())
    except OSError:
        return None


def entry_actions(entry: bytes) -> list[dict[str, Any]]:
    """The actions of a log file's contents (pure)."""
    return [json.loads(line) for line in entry.decode("utf-8").splitlines() if line.strip()]


def log_entry(uri: str, version: int) -> list[dict[str, Any]]:
    """The actions of one commit, from its log file (empty if it was cleaned up)."""
    return entry_actions(log_bytes(uri, version) or b"")


def commit_size(uri: str, version: int) -> tuple[int, int] | None:
    """(bytes, files) the commit ``version`` added, from its log entry; None if the
    entry cannot be read (e.g. already cleaned up)."""
    actions = log_entry(uri, version)
    if not actions:
        return None
    added = [a["add"] for a in actions if "add" in a]
    return sum(int(a.get("size", 0)) for a in added), len(added)


def find_commit(uri: str, after: int | None, match: Callable[[list[dict[str, Any]]], bool]
                ) -> WriteResult:
    """The newest commit after version ``after`` whose actions ``match`` (concurrent
    writers may have committed in between), with its row count and metrics."""
    last = latest_version(uri)
    if last is None or (after is not None and last <= after):
        return WriteResult(None, 0)
    for version in range(last, -1 if after is None else after, -1):
        actions = log_entry(uri, version)
        if match(actions):
            info = commit_info(actions) or {}
            metrics = {k: str(v) for k, v in (info.get("operationMetrics") or {}).items()}
            return WriteResult(version, _rows_written(metrics), metrics)
    return WriteResult(None, 0)


def committed(uri: str, commit: BatchCommit, after: int | None = None) -> WriteResult:
    """The newest commit of batch ``commit.batch_id`` by ``commit.app_id`` after version
    ``after`` (anywhere in the log if None), e.g. one a write skipped as already done."""
    wanted = (commit.app_id, commit.batch_id)
    return find_commit(uri, after, lambda actions: _writer_of(actions) == wanted)


def _writer_of(actions: list[dict[str, Any]]) -> tuple[str, int] | None:
    """(app id, batch id) a commit's metadata names, if it is one of the project's."""
    info = commit_info(actions)
    if info is None:
        return None
    meta = commit_metadata(info)
    app, batch = meta.get(APP_ID), meta.get(BATCH_ID)
    return (app, int(batch)) if isinstance(app, str) and isinstance(batch, int) else None


def commit_info(actions: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A commit's ``commitInfo`` action, if it has one (pure)."""
    return next((a["commitInfo"] for a in actions if "commitInfo" in a), None)


class BatchMarks:
    """The last batch id each app id committed to each table, from the commits' metadata.

    The first question about a table reads its log newest first until a commit of that
    app id (the whole log for an app id that never wrote); later ones read only the
    entries committed since. A table whose log went back (deleted and made again) is read
    afresh."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[int, int | None]] = {}
        """(table, app id) -> (newest version read, last batch id or None)."""

    def last_batch(self, uri: str, app_id: str) -> int | None:
        """The last batch ``app_id`` committed to the table at ``uri`` (None: none)."""
        return self.read(uri, app_id)[0]

    def read(self, uri: str, app_id: str) -> tuple[int | None, int | None]:
        """(the last batch ``app_id`` committed, the table's newest version) at ``uri``."""
        with self._lock:
            newest = latest_version(uri)
            if newest is None:
                self._seen.pop((uri, app_id), None)
                return None, None
            read, last = self._seen.get((uri, app_id), (-1, None))
            if read > newest:
                read, last = -1, None
            for version in range(newest, read, -1):
                writer = _writer_of(log_entry(uri, version))
                if writer is not None and writer[0] == app_id:
                    last = writer[1] if last is None else max(last, writer[1])
                    break
            self._seen[(uri, app_id)] = (newest, last)
            return last, newest

    def landed(self, uri: str, commit: BatchCommit, version: int) -> None:
        """This process committed ``commit`` as ``version`` of the table."""
        with self._lock:
            read, last = self._seen.get((uri, commit.app_id), (-1, None))
            if read == version - 1:
                self._seen[(uri, commit.app_id)] = (
                    version, commit.batch_id if last is None else max(last, commit.batch_id))


MARKS = BatchMarks()
"""The process's view of which batches its writers' tables hold."""


def last_batch(uri: str, app_id: str) -> int | None:
    """The last batch ``app_id`` committed to the table at ``uri``, if any."""
    return MARKS.last_batch(uri, app_id)


def _rows_written(metrics: Mapping[str, str]) -> int:
    if "num_added_rows" in metrics:  # delta-rs
        return int(metrics["num_added_rows"])
    if "numOutputRows" in metrics and "numTargetRowsInserted" not in metrics:
        return int(metrics["numOutputRows"])
    return sum(int(metrics.get(k, 0)) for k in ("numTargetRowsInserted",
                                                "numTargetRowsUpdated", "numTargetRowsDeleted"))


def max_kafka_offsets(uri: str, storage_options: Mapping[str, str] | None = None
                      ) -> dict[str, dict[str, int]]:
    """Next offset to read per topic partition, from what a bronze table already holds."""
    table = open_table(uri, storage_options)
    if table is None:
        return {}
    data = table.to_pyarrow_table(columns=["topic", "partition", "offset"])
    out: dict[str, dict[str, int]] = {}
    for row in data.group_by(["topic", "partition"]).aggregate([("offset", "max")]).to_pylist():
        out.setdefault(row["topic"], {})[str(row["partition"])] = row["offset_max"] + 1
    return out


def size_bytes(size: str) -> int:
    """A size such as ``64m``, ``512k``, ``1g`` or ``1000`` in bytes."""
    text = size.strip().lower()
    scale = {"k": 2**10, "m": 2**20, "g": 2**30}.get(text[-1:], 1)
    return int(text.rstrip("kmg")) * scale


def adds_files(uri: str, first: int, last: int) -> bool:
    """Whether any commit from ``first`` to ``last`` added a data file (read from their log
    entries up to the first that did). A range holding only a table's create, or only
    removals, has no rows to stream."""
    return any(size and size[1] for size in (commit_size(uri, v) for v in range(first, last + 1)))


def versions_up_to_bytes(uri: str, first: int, last: int, max_bytes: int) -> int:
    """The last version of the run of commits from ``first`` (to ``last`` at most) whose
    added files come to about ``max_bytes``: at least one commit, as Delta's
    ``maxBytesPerTrigger`` takes at least one file."""
    total = 0
    for version in range(first, last + 1):
        size = commit_size(uri, version)
        total += size[0] if size else 0
        if total >= max_bytes:
            return version
    return last


def rewriting(uri: str, first: int, last: int) -> list[int]:
    """The versions from ``first`` to ``last`` whose commit rewrote rows (removed a data
    file or recorded changed rows: an overwrite, a restore, a delete, an updating MERGE),
    from their log entries."""
    return [v for v in range(first, last + 1) if _rewrites(log_entry(uri, v))]


def _rewrites(actions: list[dict[str, Any]]) -> bool:
    return any("cdc" in a or ("remove" in a and a["remove"].get("dataChange", True))
               for a in actions)


def relative_path(path: str, uri: str) -> str:
    """``path`` relative to the table at ``uri`` (as given if outside it) (pure)."""
    def bare(text: str) -> str:
        if text.startswith("file:"):
            text = "/" + text[len("file:"):].lstrip("/")
        return text.rstrip("/")

    root = bare(uri) + "/"
    full = bare(path)
    return full[len(root):] if full.startswith(root) else path


def already(uri: str, commit: BatchCommit) -> tuple[WriteResult | None, int | None]:
    """A write that commits nothing, if the batch's app id has committed this batch or a
    later one (``committed`` finds that commit), else None; and the table's newest
    version, which the write's own commit comes after (one listing of the log for both)."""
    last, newest = MARKS.read(uri, commit.app_id)
    skip = None if last is None or last < commit.batch_id else WriteResult(None, 0)
    return skip, newest


def landed(uri: str, before: int | None, commit: BatchCommit) -> WriteResult:
    """The commit ``commit`` made after version ``before`` (remembered as its writer's last)."""
    result = committed(uri, commit, before)
    if result.version is not None:
        MARKS.landed(uri, commit, result.version)
    return result
