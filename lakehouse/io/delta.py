"""Delta Lake I/O with Spark: every write by delta-spark from the executors, so a
micro-batch's rows never pass through the driver; batch and streaming reads.

Each write is idempotent per batch: its commit records who wrote it and which batch
(``lakehouse.io.delta_log.BatchCommit``), and a write whose app id has committed that
batch, or a later one, is skipped (a batch replayed after a crash: Delta commit done,
Spark's not). One writer per app id and table is what the table locks
(``lakehouse.io.locks``) guarantee. The few rows the driver makes itself
(``append_rows``), the event log (``Appender``) and the creation of every table
(``ensure_table``: no deletion vectors, so delta-rs and DuckDB read it) use delta-rs.
"""


from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable as RsTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql.types import StructType

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io import chain
from lakehouse.io.delta_log import (
    MERGE_KEYS,
    BatchCommit,
    WriteResult,
    already,
    landed,
    latest_version,
    open_table,
    relative_path,
    rewriting,
)
from lakehouse.io.digest import (
    ARROW,
    SPARK,
    ZERO,
    RowsDigest,
    arrow_digest,
    arrow_file_digests,
    digest_columns,
    spark_file_digests,
)
from lakehouse.io.storage import delta_options, join, missing
from lakehouse.steps import step, table_of


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
                 storage_options: Mapping[str, str] | None = None,
                 properties: Mapping[str, str] | None = None) -> None:
    """Create an empty Delta table with this (Spark) schema unless one exists, with delta-rs:
    one small commit and no Spark job (creating a job's tables through delta-spark took
    ~0.6 s each on a cold driver, 16 tables on a fresh warehouse). ``change_feed``: record
    the change data feed, which downstream streams read to know each row's commit version;
    ``properties``: more Delta table properties (the retention of the audit horizon).
    The create is one atomic put of version 0; a ``_delta_log`` left without a commit (a
    create killed earlier) is not a table yet, and is created over. A table that exists costs
    one listing of its log, not a load of its state (a job's start-up asks for every
    table it writes)."""
    if latest_version(uri) is not None:
        return
    RsTable.create(uri, arrow_schema(schema), mode="ignore", partition_by=list(partition_by),
                   description=description or None,
                   configuration={**({CHANGE_FEED: "true"} if change_feed else {}),
                                  **(properties or {})} or None,
                   storage_options=dict(storage_options or {}) or None,
                   commit_properties=_marked("create"))
    chain.catch_up(uri, file_digests)


def append(df: DataFrame, uri: str, commit: BatchCommit,
           partition_by: Sequence[str] = ()) -> WriteResult:
    """Append ``df`` as batch ``commit.batch_id`` unless that batch is in the table."""
    return _write(df, uri, commit, "append", partition_by)


def replace(df: DataFrame, uri: str, commit: BatchCommit, where: str | None = None,
            partition_by: Sequence[str] = ()) -> WriteResult:
    """Replace the rows matching ``where`` (every row if None) with ``df``, in one commit,
    unless that batch is in the table."""
    return _write(df, uri, commit, "overwrite", partition_by, where)


def _once(uri: str, commit: BatchCommit, mode: str, doing: str,
          write: Callable[[], object], observed: Callable[[], RowsDigest] | None = None,
          scheme: str = SPARK) -> WriteResult:
    """Run ``write`` (one commit of batch ``commit.batch_id``) unless the table holds that
    batch: the commit it made (a failure is DELTA_WRITE_FAILED, nothing committed), linked
    in the table's chain (``observed``: the digest of the rows it added, once written)."""
    done, before = already(uri, commit)
    if done is not None:
        if before is not None:  # committed before a crash: linked now if not yet
            chain.catch_up(uri, file_digests, before)
        return done
    try:
        with step(f"{mode} {table_of(uri)}"):
            write()
    except Exception as exc:
        raise LakehouseError(ErrorCode.DELTA_WRITE_FAILED,
                             f"{doing} batch {commit.batch_id} into {uri} failed: {exc}",
                             hint="the batch was not committed; restarting the job retries it "
                                  "exactly once", table=uri, batch_id=commit.batch_id) from exc
    result = landed(uri, before, commit)
    if result.version is not None and chain.enabled():
        with step(f"link {table_of(uri)}"):
            chain.seal(uri, result.version, file_digests, observed() if observed else None,
                       scheme)
    return result


def _write(df: DataFrame, uri: str, commit: BatchCommit, mode: str,
           partition_by: Sequence[str], where: str | None = None) -> WriteResult:
    observed = None
    if mode == "append" and chain.enabled():  # a replace's link comes from its files
        df, observed = observe_digest(df, partition_by)
    writer = (df.write.format("delta").mode(mode)
              .option("userMetadata", commit.user_metadata()))
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if where is not None:
        writer = writer.option("replaceWhere", where)
    return _once(uri, commit, mode, f"{mode} of", lambda: writer.save(uri), observed)


def observe_digest(df: DataFrame, exclude: Sequence[str] = ()
                   ) -> tuple[DataFrame, Callable[[], RowsDigest]]:
    """``df`` computing the digest of its rows (but ``exclude``) on the executors as it is
    written, and the digest once it has been (``lakehouse.io.digest``)."""
    from uuid import uuid4

    from pyspark.sql import Observation
    observation = Observation(f"lakehouse_digest_{uuid4().hex}")
    watched = df.observe(observation, *digest_columns(df.schema, exclude))
    return watched, lambda: RowsDigest.of(observation.get)


def append_rows(rows: pa.Table, uri: str, commit: BatchCommit,
                storage_options: Mapping[str, str] | None = None) -> WriteResult:
    """Append a few rows the driver made itself (a ledger line, a batch's expectation
    results: never a micro-batch's records) with delta-rs, as batch ``commit.batch_id``
    unless that batch is in the table: no Spark job, the same commit metadata."""
    from deltalake import CommitProperties, write_deltalake
    return _once(uri, commit, "append", "append of", lambda: write_deltalake(
        uri, rows, mode="append", storage_options=dict(storage_options or {}) or None,
        commit_properties=CommitProperties(
            custom_metadata={"userMetadata": commit.user_metadata()})),
        lambda: arrow_digest(rows), ARROW)


def keep_properties(uri: str, properties: Mapping[str, str],
                    storage_options: Mapping[str, str] | None = None) -> bool:
    """Set the table's properties to ``properties`` where they differ (one commit by
    delta-rs); whether it had to. Only while no job writes the table: a metadata change
    fails a concurrent writer's commit."""
    if latest_version(uri) is None:
        return False
    table = RsTable(uri, storage_options=dict(storage_options or {}) or None)
    current = table.metadata().configuration
    if all(current.get(k) == v for k, v in properties.items()):
        return False
    table.alter.set_table_properties(dict(properties), commit_properties=_marked("properties"))
    chain.catch_up(uri, file_digests)
    return True


def add_columns(spark: SparkSession, uri: str, columns: str) -> None:
    """``ALTER TABLE ... ADD COLUMNS (columns)`` (SQL column definitions), linked."""
    with session_conf(spark, {USER_METADATA_CONF: operation_metadata("add columns")}):
        spark.sql(f"ALTER TABLE delta.`{uri.replace('`', '``')}` ADD COLUMNS ({columns})")
    chain.catch_up(uri, file_digests)


def _marked(operation: str) -> Any:
    """delta-rs commit properties with the project's mark (``lakehouse.operation``)."""
    from deltalake import CommitProperties
    return CommitProperties(custom_metadata={"userMetadata": operation_metadata(operation)})


def operation_metadata(operation: str) -> str:
    """The ``userMetadata`` of a commit the project makes outside a batch (a create, a
    property change, a vacuum): its mark, so the table's chain links it."""
    return json.dumps({"lakehouse.operation": operation})


def file_digests(uri: str, paths: list[str], scheme: str, checking: bool = False
                 ) -> dict[str, RowsDigest | None]:
    """The digest of each data file ``paths`` (relative, as the log names them) of the
    table at ``uri``, hashed with ``scheme`` (``lakehouse.io.digest``); None for a file
    that is gone. Spark's scheme reads them in one job of the active session.
    ``checking``: a file that cannot be read digests to what could be read of it (a
    corrupt file is a finding of ``verify``, not its failure)."""
    from urllib.parse import unquote

    from pyspark.sql.pandas.types import from_arrow_schema
    table = open_table(uri, delta_options(uri))
    if table is None or not paths:
        return {}
    full = {p: p if "://" in p or p.startswith("/") else join(uri, unquote(p)) for p in paths}
    gone = set(missing(list(full.values())))
    present = [f for f in full.values() if f not in gone]
    exclude = table.metadata().partition_columns
    if scheme == ARROW:
        each = arrow_file_digests(present, exclude, unreadable=checking)
    else:
        spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
        schema = from_arrow_schema(pa.schema(table.schema().to_arrow()))  # type: ignore[arg-type]
        each = spark_file_digests(spark, present, schema, exclude, unreadable=checking)
    return {p: None if f in gone else each.get(f, ZERO) for p, f in full.items()}


class Appender:
    """One process's small appends to a partitioned table with delta-rs (an event log):
    the table is kept open, so each write reads only the log's new commits."""

    def __init__(self, uri: str, partition_by: Sequence[str],
                 storage_options: Mapping[str, str] | None = None,
                 properties: Mapping[str, str] | None = None) -> None:
        self.uri = uri
        self.partition_by = list(partition_by)
        self.storage_options = dict(storage_options or {}) or None
        self.properties = dict(properties or {}) or None
        self._table: RsTable | None = None

    def append(self, rows: pa.Table) -> None:
        """Append ``rows`` in one commit (the table created by the first)."""
        from deltalake import write_deltalake
        try:
            if self._table is None:
                write_deltalake(self.uri, rows, mode="append", partition_by=self.partition_by,
                                storage_options=self.storage_options,
                                configuration=self.properties)
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

    def write() -> None:
        with session_conf(spark, {USER_METADATA_CONF: commit.user_metadata()}):
            clauses(DeltaTable.forPath(spark, uri).alias("t")
                    .merge(source.alias("s"), on)).execute()

    return _once(uri, commit, "merge", "merging", write)


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
    chain.catch_up(uri, file_digests)


def vacuum_files(spark: SparkSession, uri: str, hours: Callable[[], int],
                 dry_run: bool) -> list[str]:
    """The data files ``VACUUM ... RETAIN hours() HOURS`` deletes (relative to the table),
    deleted unless ``dry_run``; ``hours`` is asked just before each step (the clock moves).
    The caller's own retention rule replaces Delta's minimum retention check."""
    from delta.tables import DeltaTable
    confs = {RETENTION_CHECK_CONF: "false",
             LISTING_PARALLELISM_CONF: str(max(2, spark.sparkContext.defaultParallelism)),
             USER_METADATA_CONF: operation_metadata("vacuum")}
    with session_conf(spark, confs):
        path = uri.replace("`", "``")
        rows = spark.sql(f"VACUUM delta.`{path}` RETAIN {hours()} HOURS DRY RUN").collect()
        files = [relative_path(str(r["path"]), uri) for r in rows]
        if files and not dry_run:
            DeltaTable.forPath(spark, uri).vacuum(float(hours()))
    chain.catch_up(uri, file_digests)
    return files
