"""Delta Lake I/O: every write by delta-spark from the executors; light reads by delta-rs.

Writes (``append``, ``merge``, ``replace``) run as Spark jobs through delta-spark, so a
micro-batch's rows never pass through the driver. Each is idempotent per batch: its
commit records who wrote it and which batch (``lakehouse.app_id`` and
``lakehouse.batch_id`` in ``userMetadata``, with the batch's provenance, which
``commit_metadata`` reads back), and a write whose app id has committed that batch, or a
later one, is skipped (a batch replayed after a crash: Delta commit done, Spark's not).
The check reads only the log entries committed since it last looked (``BatchMarks``), not
Delta's transaction state: delta-spark 4.4 rebuilds a snapshot's whole state with a Spark
job to answer ``txnAppId``/``txnVersion`` (``SnapshotState.setTransactions``), about 0.6 s
on every commit here. One writer per app id and table is what the table locks
(``lakehouse.io.locks``) guarantee.

Reads that need no JVM (commit metadata, versions, what a bronze table holds) use
delta-rs, and so do the few rows the driver makes itself (``append_rows``) and the
creation of every table (``ensure_table``: no deletion vectors, so delta-rs and DuckDB
read it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable as RsTable
from deltalake.exceptions import TableNotFoundError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql.types import StructType

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.storage import filesystem, join
from lakehouse.steps import step, table_of

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


def log_entry(uri: str, version: int) -> list[dict[str, Any]]:
    """The actions of one commit, from its log file (empty if it was cleaned up)."""
    fs, path = _log_dir(uri)
    try:
        with fs.open_input_stream(f"{path}/{version:020d}.json") as stream:
            lines = stream.read().decode("utf-8").splitlines()
    except (OSError, FileNotFoundError):
        return []
    return [json.loads(line) for line in lines if line.strip()]


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
            info: dict[str, Any] = next((a["commitInfo"] for a in actions
                                         if "commitInfo" in a), {})
            metrics = {k: str(v) for k, v in (info.get("operationMetrics") or {}).items()}
            return WriteResult(version, _rows_written(metrics), metrics)
    return WriteResult(None, 0)


def committed(uri: str, commit: BatchCommit) -> WriteResult:
    """The commit of batch ``commit.batch_id`` by ``commit.app_id`` anywhere in the log
    (newest first), e.g. one a write skipped as already done."""
    return find_commit(uri, None, _committed_by(commit))


def _writer_of(actions: list[dict[str, Any]]) -> tuple[str, int] | None:
    """(app id, batch id) a commit's metadata names, if it is one of the project's."""
    info = next((a["commitInfo"] for a in actions if "commitInfo" in a), None)
    if info is None:
        return None
    meta = commit_metadata(info)
    app, batch = meta.get(APP_ID), meta.get(BATCH_ID)
    return (app, int(batch)) if isinstance(app, str) and isinstance(batch, int) else None


def _committed_by(commit: BatchCommit) -> Callable[[list[dict[str, Any]]], bool]:
    """Matches the commit of batch ``commit.batch_id`` by ``commit.app_id``."""
    return lambda actions: _writer_of(actions) == (commit.app_id, commit.batch_id)


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


def _already(uri: str, commit: BatchCommit) -> tuple[WriteResult | None, int | None]:
    """A write that commits nothing, if the batch's app id has committed this batch or a
    later one (``committed`` finds that commit), else None; and the table's newest
    version, which the write's own commit comes after (one listing of the log for both)."""
    last, newest = MARKS.read(uri, commit.app_id)
    skip = None if last is None or last < commit.batch_id else WriteResult(None, 0)
    return skip, newest


def _landed(uri: str, before: int | None, commit: BatchCommit) -> WriteResult:
    result = find_commit(uri, before, _committed_by(commit))
    if result.version is not None:
        MARKS.landed(uri, commit, result.version)
    return result


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
    if data.num_rows == 0:
        return {}
    out: dict[str, dict[str, int]] = {}
    for row in data.group_by(["topic", "partition"]).aggregate([("offset", "max")]).to_pylist():
        out.setdefault(row["topic"], {})[str(row["partition"])] = row["offset_max"] + 1
    return out


def read_table(spark: SparkSession, uri: str, version: int | None = None) -> DataFrame:
    """The Delta table at ``uri`` as a Spark DataFrame: as it is now, or as of ``version``."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", str(version))
    return reader.load(uri)


def read_files(spark: SparkSession, uri: str, columns: Sequence[str], select: str,
               storage_options: Mapping[str, str] | None = None) -> DataFrame:
    """``columns`` of the table's rows in the files ``select`` keeps, as a Spark scan of
    Parquet files the table's log lists (read by delta-rs on the driver). ``select`` is a
    SQL predicate over partition columns (exact: a file holds one partition) or over
    data columns (the files whose statistics allow a match: the caller filters their
    rows). No delta-spark snapshot: delta-spark rebuilds a table's whole state with Spark
    jobs at each new version before it scans it, which a micro-batch that looks up part
    of a table written one batch before paid every time. Exact for the project's tables:
    no deletion vectors, no column mapping (``ensure_table``), so the files hold exactly
    the rows."""
    from pyspark.sql.pandas.types import from_arrow_schema
    table = open_table(uri, storage_options)
    if table is None:
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND, f"no Delta table at {uri}")
    schema = pa.schema(table.schema().to_arrow())  # type: ignore[arg-type]
    wanted = from_arrow_schema(pa.schema([schema.field(c) for c in columns]))
    files = table.file_uris(file_pruning_predicate=select)
    if not files:
        return spark.createDataFrame([], wanted)
    return spark.read.schema(wanted).parquet(*files)


# -- writing: batches with delta-spark, creates and driver-made rows with delta-rs --------

CHANGE_FEED = "delta.enableChangeDataFeed"
"""The table property that records the change data feed."""


def ensure_table(uri: str, schema: StructType, partition_by: Sequence[str] = (),
                 description: str = "", change_feed: bool = False,
                 storage_options: Mapping[str, str] | None = None) -> None:
    """Create an empty Delta table with this (Spark) schema unless one exists, with delta-rs:
    one small commit and no Spark job (creating a job's tables through delta-spark took
    ~0.6 s each on a cold driver, 16 tables on a fresh warehouse). ``change_feed``: record
    the change data feed, which downstream streams read to know each row's commit version.
    The create is one atomic put of version 0; a ``_delta_log`` left without a commit (a
    create killed earlier) is not a table yet, and is created over. A table that exists costs
    one listing of its log, not a load of its state (a job's start-up asks for every
    table it writes)."""
    if latest_version(uri) is not None:
        return
    RsTable.create(uri, arrow_schema(schema), mode="ignore", partition_by=list(partition_by),
                   description=description or None,
                   configuration={CHANGE_FEED: "true"} if change_feed else None,
                   storage_options=dict(storage_options or {}) or None)


def write_failed(doing: str, uri: str, batch_id: int, exc: Exception) -> LakehouseError:
    """The error of a micro-batch commit that failed (nothing was committed)."""
    return LakehouseError(ErrorCode.DELTA_WRITE_FAILED,
                          f"{doing} batch {batch_id} into {uri} failed: {exc}",
                          hint="the batch was not committed; restarting the job retries it "
                               "exactly once", table=uri, batch_id=batch_id)


def append(df: DataFrame, uri: str, commit: BatchCommit,
           partition_by: Sequence[str] = ()) -> WriteResult:
    """Append ``df`` as batch ``commit.batch_id`` unless that batch is in the table."""
    return _write(df, uri, commit, "append", partition_by)


def replace(df: DataFrame, uri: str, commit: BatchCommit, where: str | None = None,
            partition_by: Sequence[str] = ()) -> WriteResult:
    """Replace the rows matching ``where`` (every row if None) with ``df``, in one commit,
    unless that batch is in the table."""
    return _write(df, uri, commit, "overwrite", partition_by, where)


def _write(df: DataFrame, uri: str, commit: BatchCommit, mode: str,
           partition_by: Sequence[str], where: str | None = None) -> WriteResult:
    done, before = _already(uri, commit)
    if done is not None:
        return done
    writer = (df.write.format("delta").mode(mode)
              .option("userMetadata", commit.user_metadata()))
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if where is not None:
        writer = writer.option("replaceWhere", where)
    try:
        with step(f"{mode} {table_of(uri)}"):
            writer.save(uri)
    except Exception as exc:
        raise write_failed(f"{mode} of", uri, commit.batch_id, exc) from exc
    return _landed(uri, before, commit)


def append_rows(rows: pa.Table, uri: str, commit: BatchCommit,
                storage_options: Mapping[str, str] | None = None) -> WriteResult:
    """Append a few rows the driver made itself (a ledger line, a batch's expectation
    results: never a micro-batch's records) with delta-rs, as batch ``commit.batch_id``
    unless that batch is in the table: no Spark job, the same commit metadata."""
    from deltalake import CommitProperties, write_deltalake
    done, before = _already(uri, commit)
    if done is not None:
        return done
    try:
        with step(f"append {table_of(uri)}"):
            write_deltalake(uri, rows, mode="append",
                            storage_options=dict(storage_options or {}) or None,
                            commit_properties=CommitProperties(
                                custom_metadata={"userMetadata": commit.user_metadata()}))
    except Exception as exc:
        raise write_failed("append of", uri, commit.batch_id, exc) from exc
    return _landed(uri, before, commit)


class Appender:
    """One process's small appends to a partitioned table with delta-rs (an event log):
    the table is kept open, so each write reads only the log's new commits."""

    def __init__(self, uri: str, partition_by: Sequence[str],
                 storage_options: Mapping[str, str] | None = None) -> None:
        self.uri = uri
        self.partition_by = list(partition_by)
        self.storage_options = dict(storage_options or {}) or None
        self._table: RsTable | None = None

    def append(self, rows: pa.Table) -> None:
        """Append ``rows`` in one commit (the table created by the first)."""
        from deltalake import write_deltalake
        try:
            if self._table is None:
                write_deltalake(self.uri, rows, mode="append", partition_by=self.partition_by,
                                storage_options=self.storage_options)
                self._table = RsTable(self.uri, storage_options=self.storage_options)
            else:
                write_deltalake(self._table, rows, mode="append",
                                partition_by=self.partition_by)
        except Exception:
            self._table = None  # opened afresh next time
            raise

    def compact(self, partition: tuple[str, str]) -> None:
        """Rewrite the small files of one partition (``(column, value)``) into few."""
        if self._table is not None:
            self._table.optimize.compact(partition_filters=[(partition[0], "=", partition[1])])


def arrow_schema(schema: StructType) -> pa.Schema:
    """A table's Spark schema as Arrow's (timestamps in UTC), for ``append_rows``."""
    from pyspark.sql.pandas.types import to_arrow_schema
    return to_arrow_schema(schema, timezone="UTC")


USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


@contextmanager
def session_conf(spark: SparkSession, confs: Mapping[str, str]) -> Iterator[None]:
    """Set session confs around one call; afterwards each is back as it was (unset if it
    was not set)."""
    before = {key: spark.conf.get(key, None) for key in confs}
    for key, value in confs.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


MergeSpec = Callable[[Any], Any]
"""Adds the WHEN clauses to a ``DeltaMergeBuilder`` and returns it."""


def merge(source: DataFrame, uri: str, on: str | Column, clauses: MergeSpec, commit: BatchCommit,
          keys: Sequence[str] = ()) -> WriteResult:
    """MERGE ``source`` (alias ``s``) into the table at ``uri`` (alias ``t``) on ``on``
    with the given WHEN clauses, as batch ``commit.batch_id`` unless that batch is in the
    table. ``keys`` are recorded in the commit (``lakehouse.keys``)."""
    from delta.tables import DeltaTable
    spark = source.sparkSession
    if keys:
        commit = commit.with_metadata(**{MERGE_KEYS: json.dumps(list(keys))})
    done, before = _already(uri, commit)
    if done is not None:
        return done
    try:
        with step(f"merge {table_of(uri)}"), \
                session_conf(spark, {USER_METADATA_CONF: commit.user_metadata()}):
            clauses(DeltaTable.forPath(spark, uri).alias("t")
                    .merge(source.alias("s"), on)).execute()
    except Exception as exc:
        raise write_failed("merging", uri, commit.batch_id, exc) from exc
    return _landed(uri, before, commit)


# -- streaming reads -----------------------------------------------------------------------

VERSION_COLUMN = "_commit_version"
"""The commit version each row of a change stream came from."""
CHANGE_COLUMNS = ("_change_type", "_commit_timestamp")
"""The change feed's other columns, which ``appended_rows`` drops."""


def read_changes(spark: SparkSession, uri: str, max_bytes_per_trigger: str,
                 starting_version: int | None = None) -> DataFrame:
    """A Delta table as a stream of its change data feed from ``starting_version`` (the
    first, if None): every row added (and removed), with the version that committed it
    (``_commit_version``); each micro-batch takes commits up to about
    ``max_bytes_per_trigger``."""
    reader = (spark.readStream.format("delta").option("readChangeFeed", "true")
              .option("maxBytesPerTrigger", max_bytes_per_trigger))
    # Always from an explicit version: without one, Delta reads the table's current
    # snapshot first and stamps all of it with the snapshot's version.
    if not starting_version:
        return reader.option("startingVersion", "0").load(uri)
    # Delta refuses a starting version past the table's latest one (a consumer caught up
    # with its input, resuming on a new checkpoint): start at the version before, which
    # exists, and drop its rows.
    from pyspark.sql import functions as F
    return (reader.option("startingVersion", str(starting_version - 1)).load(uri)
            .filter(F.col(VERSION_COLUMN) >= starting_version))


def read_appended(spark: SparkSession, uri: str, first: int, last: int) -> DataFrame:
    """The rows the appending commits from version ``first`` to ``last`` added, each with
    its version (``_commit_version``), read once from the change data feed: what a
    stream of the table's changes delivers (``appended_rows``)."""
    changes = (spark.read.format("delta").option("readChangeFeed", "true")
               .option("startingVersion", str(first)).option("endingVersion", str(last))
               .load(uri))
    return appended_rows(changes, rewriting(uri, first, last))


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


def appended_rows(changes: DataFrame, rewritten: Sequence[int]) -> DataFrame:
    """The rows that appending commits added to the table: the change feed without the
    versions in ``rewritten`` (``rewriting``), which are left out whole, as
    ``skipChangeCommits`` does: what they change downstream is rebuilt by a replay of
    that table. (Known from the log on the driver: no second scan of the feed.)"""
    from pyspark.sql import functions as F
    kept = changes.filter(~F.col(VERSION_COLUMN).isin(list(rewritten))) if rewritten \
        else changes
    return kept.drop(*CHANGE_COLUMNS)


# -- restore and vacuum (delta-spark) -------------------------------------------------------

RETENTION_CHECK_CONF = "spark.databricks.delta.retentionDurationCheck.enabled"
"""Delta's own refusal of a vacuum retention below the table's (168 h by default)."""
LISTING_PARALLELISM_CONF = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
"""Tasks of vacuum's file listing jobs: 10,000 by default, which takes Spark ~40 s per
table on a small machine for a handful of files."""


def restore_version(spark: SparkSession, uri: str, version: int,
                    metadata: Mapping[str, Any]) -> None:
    """RESTORE the table to ``version``, the commit's ``userMetadata`` being ``metadata``."""
    from delta.tables import DeltaTable
    with session_conf(spark, {USER_METADATA_CONF: json.dumps(metadata, sort_keys=True)}):
        DeltaTable.forPath(spark, uri).restoreToVersion(version)


def vacuum_files(spark: SparkSession, uri: str, hours: Callable[[], int],
                 dry_run: bool) -> list[str]:
    """The data files ``VACUUM ... RETAIN hours() HOURS`` deletes (relative to the table),
    deleted unless ``dry_run``; ``hours`` is asked just before each step (the clock moves).
    The caller's own retention rule replaces Delta's minimum retention check."""
    from delta.tables import DeltaTable
    confs = {RETENTION_CHECK_CONF: "false",
             LISTING_PARALLELISM_CONF: str(max(2, spark.sparkContext.defaultParallelism))}
    with session_conf(spark, confs):
        path = uri.replace("`", "``")
        rows = spark.sql(f"VACUUM delta.`{path}` RETAIN {hours()} HOURS DRY RUN").collect()
        files = [relative_path(str(r["path"]), uri) for r in rows]
        if files and not dry_run:
            DeltaTable.forPath(spark, uri).vacuum(float(hours()))
    return files


def relative_path(path: str, uri: str) -> str:
    """``path`` relative to the table at ``uri`` (as given if outside it) (pure)."""
    def bare(text: str) -> str:
        if text.startswith("file:"):
            text = "/" + text[len("file:"):].lstrip("/")
        return text.rstrip("/")

    root = bare(uri) + "/"
    full = bare(path)
    return full[len(root):] if full.startswith(root) else path
