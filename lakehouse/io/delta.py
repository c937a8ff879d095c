"""Delta Lake I/O through delta-rs: idempotent micro-batch appends and merges.

Every streaming write carries the Delta transaction action
``txn(appId=<stable id of the table's writer>, version=<batch id>)``. Before writing, the
writer asks the table for the last version it committed under that app id; a micro-batch
replayed after a crash (Delta commit done, Spark commit not) is therefore skipped rather
than written twice. Commits also carry custom metadata (batch id, input ranges).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from lakehouse.errors import ErrorCode, LakehouseError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteResult:
    """What one idempotent append did."""

    written: bool
    rows: int
    version: int | None
    """The table version the batch is in (None for an empty batch that wrote nothing)."""


def open_table(uri: str, storage_options: Mapping[str, str] | None = None,
               version: int | None = None) -> DeltaTable | None:
    """The Delta table at ``uri``, or None if there is none yet."""
    try:
        return DeltaTable(uri, version=version, storage_options=dict(storage_options or {}))
    except TableNotFoundError:
        return None


def ensure_table(uri: str, schema: pa.Schema, partition_by: Sequence[str],
                 storage_options: Mapping[str, str] | None = None,
                 description: str | None = None) -> DeltaTable:
    """Create an empty table with this schema unless one exists."""
    table = open_table(uri, storage_options)
    if table is not None:
        return table
    return DeltaTable.create(uri, schema=schema, mode="ignore", partition_by=list(partition_by),
                             description=description,
                             storage_options=dict(storage_options or {}))


def max_kafka_offsets(uri: str, storage_options: Mapping[str, str] | None = None
                      ) -> dict[str, dict[str, int]]:
    """Next offset to read per topic partition, from what a bronze table already holds."""
    table = open_table(uri, storage_options)
    if table is None:
        return {}
    data = table.to_pyarrow_table(columns=["topic", "partition", "offset"])
    if data.num_rows == 0:
        return {}
    out: dict[str, dict[str, int]] = {}
    for row in data.group_by(["topic", "partition"]).aggregate([("offset", "max")]).to_pylist():
        out.setdefault(row["topic"], {})[str(row["partition"])] = row["offset_max"] + 1
    return out


def commit_size(table: DeltaTable, version: int) -> tuple[int, int] | None:
    """(bytes, files) the commit ``version`` of ``table`` added, from its log entry; None
    if the entry cannot be read (e.g. already cleaned up)."""
    import pyarrow.fs as pafs
    entry = f"{table.table_uri.rstrip('/')}/_delta_log/{version:020d}.json"
    try:
        fs, path = pafs.FileSystem.from_uri(entry if "://" in entry else f"file://{entry}")
        with fs.open_input_stream(path) as stream:
            lines = stream.read().decode("utf-8").splitlines()
    except (OSError, ValueError) as exc:
        log.debug("no log entry %s: %s", entry, exc)
        return None
    added = [json.loads(line)["add"] for line in lines if line.startswith('{"add"')]
    return sum(int(a.get("size", 0)) for a in added), len(added)


def batch_commit(app_id: str, batch_id: int, metadata: Mapping[str, Any]) -> CommitProperties:
    """A micro-batch's commit: its transaction action and custom metadata."""
    return CommitProperties(
        custom_metadata={"lakehouse.app_id": app_id, "lakehouse.batch_id": batch_id,
                         **metadata},
        app_transactions=[Transaction(app_id=app_id, version=batch_id)])


def write_failed(doing: str, uri: str, batch_id: int, exc: Exception) -> LakehouseError:
    """The error of a micro-batch commit that failed (nothing was committed)."""
    return LakehouseError(ErrorCode.DELTA_WRITE_FAILED,
                          f"{doing} batch {batch_id} into {uri} failed: {exc}",
                          hint="the batch was not committed; restarting the job retries it "
                               "exactly once", table=uri, batch_id=batch_id)


class IdempotentAppender:
    """Appends micro-batches to one table, each at most once."""

    def __init__(self, uri: str, app_id: str, partition_by: Sequence[str] = (),
                 storage_options: Mapping[str, str] | None = None) -> None:
        self.uri = uri
        self.app_id = app_id
        self.partition_by = list(partition_by)
        self.storage_options = dict(storage_options or {})

    def committed_version(self) -> int | None:
        """The last batch id this writer committed to the table, if any."""
        table = open_table(self.uri, self.storage_options)
        return None if table is None else table.transaction_version(self.app_id)

    def append(self, data: pa.Table, batch_id: int, metadata: Mapping[str, Any],
               before_commit: Any = None) -> WriteResult:
        """Append ``data`` as batch ``batch_id`` unless that batch is already in the table."""
        table = open_table(self.uri, self.storage_options)
        done = None if table is None else table.transaction_version(self.app_id)
        if done is not None and done >= batch_id:
            log.info("%s: batch %d already committed (txn %s=%d); skipping the replay",
                     self.uri, batch_id, self.app_id, done)
            return WriteResult(False, data.num_rows, None)
        if data.num_rows == 0:
            return WriteResult(False, 0, None)
        if before_commit is not None:
            before_commit()
        data = rebuild_nested(data)
        if table is not None:
            data = _conform(data, table.schema().to_arrow())
        try:
            write_deltalake(
                table if table is not None else self.uri, data, mode="append",
                partition_by=self.partition_by or None,
                storage_options=self.storage_options or None,
                commit_properties=batch_commit(self.app_id, batch_id, metadata))
        except Exception as exc:
            raise write_failed("writing", self.uri, batch_id, exc) from exc
        if table is None:
            table = DeltaTable(self.uri, storage_options=self.storage_options or None)
        else:
            table.update_incremental()
        return WriteResult(True, data.num_rows, table.version())


def replace_rows(uri: str, data: pa.Table, app_id: str, batch_id: int,
                 metadata: Mapping[str, Any], predicate: str | None = None,
                 partition_by: Sequence[str] = (),
                 storage_options: Mapping[str, str] | None = None) -> WriteResult:
    """Replace the rows matching ``predicate`` (all rows if None) with ``data``, in one
    commit carrying ``txn(app_id, batch_id)``; skipped if that batch is in the table. A
    table that does not exist yet is created with ``data``."""
    opts = dict(storage_options or {})
    table = open_table(uri, opts)
    done = None if table is None else table.transaction_version(app_id)
    if done is not None and done >= batch_id:
        log.info("%s: %s batch %d already committed; skipping", uri, app_id, batch_id)
        return WriteResult(False, data.num_rows, None)
    data = rebuild_nested(data)
    if table is not None:
        data = _conform(data, table.schema().to_arrow())
    try:
        write_deltalake(table if table is not None else uri, data, mode="overwrite",
                        predicate=predicate, partition_by=list(partition_by) or None,
                        storage_options=opts or None,
                        commit_properties=batch_commit(app_id, batch_id, metadata))
    except Exception as exc:
        raise write_failed("replacing rows of", uri, batch_id, exc) from exc
    table = DeltaTable(uri, storage_options=opts or None)
    return WriteResult(True, data.num_rows, table.version())


class IdempotentMerger:
    """Upserts and deletes rows of one table by its keys (Delta MERGE), each batch at most
    once: the MERGE commit carries the batch's transaction action, like an append."""

    def __init__(self, uri: str, app_id: str, keys: Sequence[str],
                 storage_options: Mapping[str, str] | None = None) -> None:
        self.uri = uri
        self.app_id = app_id
        self.keys = list(keys)
        self.storage_options = dict(storage_options or {})

    def merge(self, upserts: pa.Table, batch_id: int, metadata: Mapping[str, Any],
              deletes: pa.Table | None = None) -> WriteResult:
        """Insert or replace ``upserts`` and delete the rows whose keys are in ``deletes``
        as batch ``batch_id``, unless that batch is already in the table."""
        table = open_table(self.uri, self.storage_options)
        if table is None:
            raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND, f"no Delta table at {self.uri}")
        done = table.transaction_version(self.app_id)
        if done is not None and done >= batch_id:
            log.info("%s: batch %d already merged (txn %s=%d); skipping the replay",
                     self.uri, batch_id, self.app_id, done)
            return WriteResult(False, upserts.num_rows, None)
        removed = 0 if deletes is None else deletes.num_rows
        if upserts.num_rows == 0 and removed == 0:
            return WriteResult(False, 0, None)
        # Nullable throughout: delete markers carry nulls outside the key columns.
        schema = pa.schema([f.with_nullable(True) for f in pa.schema(table.schema().to_arrow())])
        source = _conform(upserts, schema).append_column(
            _DELETE, pa.array([False] * upserts.num_rows))
        if deletes is not None and removed:
            gone = pa.table({f.name: deletes.column(f.name).cast(f.type) if f.name in self.keys
                             else pa.nulls(removed, f.type) for f in schema})
            source = pa.concat_tables([source, gone.append_column(
                _DELETE, pa.array([True] * removed))])
        on = " AND ".join(f"(t.{k} IS NOT DISTINCT FROM s.{k})" for k in self.keys)
        values = {f.name: f"s.{f.name}" for f in schema}
        metadata = {**metadata, MERGE_KEYS: json.dumps(self.keys)}
        try:
            (table.merge(rebuild_nested(source), on, source_alias="s", target_alias="t",
                         commit_properties=batch_commit(self.app_id, batch_id, metadata))
             .when_matched_delete(f"s.{_DELETE}")
             .when_matched_update(values, f"NOT s.{_DELETE}")
             .when_not_matched_insert(values, f"NOT s.{_DELETE}")
             .execute())
        except Exception as exc:
            raise write_failed("merging", self.uri, batch_id, exc) from exc
        table.update_incremental()
        return WriteResult(True, source.num_rows, table.version())


_DELETE = "_lakehouse_delete"
MERGE_KEYS = "lakehouse.keys"
"""Commit metadata of every MERGE: the key columns, so tools can compare versions by key."""


class Writer(Protocol):
    """Anything that commits under a Delta transaction app id."""

    app_id: str


class AppIdBinding:
    """Gives some appenders the Delta transaction app id of a streaming query.

    The id includes the checkpoint's query id (stable across restarts, new if the
    checkpoint is deleted, so a fresh checkpoint never has its batches mistaken for
    replays). It is known only once ``start()`` returns, and Spark may run a first batch
    before that: batches ``wait()`` for ``bind``.
    """

    def __init__(self, *appenders: Writer) -> None:
        self.appenders = appenders
        self._ready = threading.Event()

    def bind(self, app_id: str) -> None:
        """Use ``app_id`` for every write from now on."""
        for appender in self.appenders:
            appender.app_id = app_id
        self._ready.set()

    def wait(self, timeout: float = 60.0) -> None:
        """Block until ``bind`` ran."""
        self._ready.wait(timeout)


def _conform(data: pa.Table, target: Any) -> pa.Table:
    """Cast a batch to the table's Arrow schema (column order and types, not names)."""
    schema = pa.schema(target)
    if data.schema.equals(schema, check_metadata=False):
        return data
    return data.select(schema.names).cast(schema)


def rebuild_nested(data: pa.Table) -> pa.Table:
    """Rebuild list/struct columns into canonical Arrow buffers.

    Spark's Arrow export can give an empty string/binary child array an offsets buffer of
    zero bytes (the format asks for one entry). pyarrow tolerates it, arrow-rs (delta-rs)
    reads past it and panics ("range start index ... out of range"), e.g. on a batch whose
    records all have no Kafka headers. ``take`` writes fresh, well-formed buffers.
    """
    nested = [i for i, f in enumerate(data.schema)
              if pa.types.is_nested(f.type) and data.num_rows]
    if not nested:
        return data
    indices = pa.array(range(data.num_rows), pa.int64())
    for i in nested:
        column = data.column(i)
        data = data.set_column(i, data.schema.field(i), column.take(indices))
    return data
