"""``delta-py``: a Spark streaming source over a Delta table (Python Data Source API).

Spark's own Delta source is a JVM jar that is not available here; this one reads the
Delta transaction log directly and the data files with pyarrow, so any table the project
writes through delta-rs can feed the next layer as a stream.

- **Offsets** are table versions: ``{"version": v}`` means every version up to ``v`` has
  been processed. A new query starts after ``startingVersion - 1`` (default: from the
  first version, so the whole table is read).
- **Partitions** are the data files added (``dataChange = true``) in the versions of a
  micro-batch; a file with more than ``rowsPerPartition`` rows (default 10,000) is read
  by several tasks, each taking a slice, so one big commit still uses every core.
- **Rate limit**: ``maxFilesPerTrigger`` / ``maxRowsPerTrigger`` admit whole versions
  until the cap is reached (at least one version per batch, like Delta's soft caps).
- Commits that remove data (UPDATE, DELETE, MERGE rewriting files) are an error, since
  an append-only stream cannot express them; ``skipChangeCommits=true`` skips them.
  Compaction (``dataChange = false``) is ignored.
- A version or data file removed by log cleanup or VACUUM is an error (LH-DELTA-002).

Every row carries ``_commit_version``: the table version its file was added in.

Options: ``path`` (required), ``startingVersion``, ``maxFilesPerTrigger``,
``maxRowsPerTrigger``, ``rowsPerPartition``, ``skipChangeCommits``.

Batch reads (``spark.read.format("delta-py")``) read the table as of ``versionAsOf``
(default: the latest version), one partition per data file of that snapshot; a
snapshot does not say which version added a file, so ``_commit_version`` is null there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
from pyspark.sql.datasource import (
    DataSource,
    DataSourceReader,
    DataSourceStreamReader,
    InputPartition,
)
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from lakehouse.errors import ErrorCode, LakehouseError

log = logging.getLogger(__name__)

FORMAT_NAME = "delta-py"
VERSION_COLUMN = "_commit_version"


@dataclass(frozen=True)
class AddedFile:
    """One data file a commit added."""

    path: str
    """Relative to the table root (decoded), or an absolute URI."""
    version: int | None
    """The version that added it (None when read from a snapshot)."""
    partition_values: tuple[tuple[str, str | None], ...]
    rows: int | None


@dataclass(frozen=True)
class Commit:
    """What one table version did, as far as a stream reader cares."""

    version: int
    added: tuple[AddedFile, ...]
    removes_data: bool
    operation: str


def parse_commit(version: int, lines: list[str]) -> Commit:
    """Parse one ``_delta_log/<version>.json`` file (newline-delimited actions)."""
    added: list[AddedFile] = []
    removes = False
    operation = ""
    for line in lines:
        if not line.strip():
            continue
        action = json.loads(line)
        if "add" in action:
            add = action["add"]
            if not add.get("dataChange", True):
                continue
            if add.get("deletionVector"):
                raise LakehouseError(ErrorCode.DELTA_UNSUPPORTED,
                                     f"version {version} adds a file with a deletion vector, "
                                     "which this reader does not support",
                                     hint="disable deletion vectors on this table")
            stats = json.loads(add["stats"]) if add.get("stats") else {}
            added.append(AddedFile(unquote(add["path"]), version,
                                   tuple(sorted(add.get("partitionValues", {}).items())),
                                   stats.get("numRecords")))
        elif "remove" in action and action["remove"].get("dataChange", True):
            removes = True
        elif "commitInfo" in action:
            operation = action["commitInfo"].get("operation", "")
    return Commit(version, tuple(added), removes, operation)


def plan_versions(start: int, latest: int, commits: Mapping[int, Commit],
                  max_files: int | None, max_rows: int | None) -> int:
    """The last version of the next batch: whole versions after ``start`` up to
    ``latest``, stopping once a cap is reached (always at least one version)."""
    files = rows = 0
    end = start
    for v in range(start + 1, latest + 1):
        commit = commits[v]
        if end > start and ((max_files and files + len(commit.added) > max_files)
                            or (max_rows and rows + sum(f.rows or 0 for f in commit.added)
                                > max_rows)):
            break
        files += len(commit.added)
        rows += sum(f.rows or 0 for f in commit.added)
        end = v
    return end


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and path of a local path or an object-store URI."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), uri


class DeltaLog:
    """Reads a table's commit files through a pyarrow filesystem (local or object store)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.fs, self.root = filesystem(self.uri)
        self._cache: dict[int, Commit] = {}

    def latest_version(self) -> int:
        """The table's current version (-1 if it has no commits)."""
        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.root}/_delta_log",
                                                        allow_not_found=True))
        versions = [int(i.base_name[:20]) for i in infos
                    if i.base_name.endswith(".json") and i.base_name[:20].isdigit()]
        return max(versions, default=-1)

    def commit(self, version: int) -> Commit:
        """One version's commit, read once and cached."""
        if version not in self._cache:
            path = f"{self.root}/_delta_log/{version:020d}.json"
            try:
                with self.fs.open_input_stream(path) as fh:
                    text = fh.read().decode("utf-8")
            except FileNotFoundError:
                raise LakehouseError(
                    ErrorCode.DELTA_VERSION_GONE,
                    f"version {version} of {self.uri} is no longer in its transaction log "
                    "(removed by log cleanup)",
                    hint="the stream cannot continue from its checkpoint; restart it from a "
                         "later version (startingVersion) with a new checkpoint, or replay",
                    table=self.uri, version=version) from None
            self._cache[version] = parse_commit(version, text.splitlines())
        return self._cache[version]

    def forget_until(self, version: int) -> None:
        """Drop cached commits at or below ``version`` (already processed)."""
        for v in [v for v in self._cache if v <= version]:
            del self._cache[v]


class DeltaFilePartition(InputPartition):
    """Rows ``[start, stop)`` of one data file (all of it when ``stop`` is None)."""

    def __init__(self, file: AddedFile, start: int = 0, stop: int | None = None) -> None:
        super().__init__((file.path, start))
        self.file = file
        self.start = start
        self.stop = stop


def split_file(file: AddedFile, rows_per_partition: int) -> list[DeltaFilePartition]:
    """A file as slices of at most ``rows_per_partition`` rows (whole if its size is not
    in the log)."""
    if not file.rows or file.rows <= rows_per_partition:
        return [DeltaFilePartition(file)]
    return [DeltaFilePartition(file, start, min(start + rows_per_partition, file.rows))
            for start in range(0, file.rows, rows_per_partition)]


class DeltaStreamOptions:
    """The source's options, validated once on the driver."""

    def __init__(self, options: Mapping[str, str]) -> None:
        opts = {k.lower(): v for k, v in options.items()}
        self.path = opts.get("path", "")
        if not self.path:
            raise LakehouseError(ErrorCode.DELTA_BAD_OPTION, "option path is required")
        self.starting_version = _int(opts, "startingversion", 0)
        self.max_files = _int(opts, "maxfilespertrigger", 0) or None
        self.max_rows = _int(opts, "maxrowspertrigger", 0) or None
        self.rows_per_partition = _int(opts, "rowsperpartition", 10_000) or 10_000
        self.skip_change_commits = opts.get("skipchangecommits", "false").lower() == "true"
        as_of = _int(opts, "versionasof", -1) if opts.get("versionasof", "") else -1
        self.version_as_of = as_of if as_of >= 0 else None


def _int(opts: Mapping[str, str], key: str, default: int) -> int:
    raw = opts.get(key, "")
    if raw == "":
        return default
    if not raw.isdigit():
        raise LakehouseError(ErrorCode.DELTA_BAD_OPTION,
                             f"option {key} must be a non-negative integer, got {raw!r}")
    return int(raw)


def table_arrow_schema(uri: str, version: int | None = None) -> pa.Schema:
    """The table's schema (current, or at ``version``) plus ``_commit_version``."""
    from lakehouse.io.delta import open_table
    table = open_table(uri, version=version)
    if table is None:
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND, f"no Delta table at {uri}",
                             hint="start the upstream pipeline first; it creates the table")
    return pa.schema(table.schema().to_arrow()).append(pa.field(VERSION_COLUMN, pa.int64()))


class DeltaDataSource(DataSource):
    """Registers as ``spark.readStream.format("delta-py")``."""

    @classmethod
    def name(cls) -> str:
        """The format name."""
        return FORMAT_NAME

    def schema(self) -> StructType:
        """The table's columns, plus ``_commit_version``."""
        opts = DeltaStreamOptions(self.options)
        return from_arrow_schema(table_arrow_schema(opts.path, opts.version_as_of))

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        """The micro-batch reader."""
        return DeltaStreamReader(self.options)

    def reader(self, schema: StructType) -> DataSourceReader:
        """The batch reader: one snapshot of the table."""
        return DeltaBatchReader(self.options)


def snapshot_files(uri: str, version: int | None) -> list[AddedFile]:
    """The data files of the table as of ``version`` (latest if None)."""
    from lakehouse.io.delta import open_table
    table = open_table(uri, version=version)
    if table is None:
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND, f"no Delta table at {uri}")
    adds = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    return [AddedFile(unquote(a["path"]), None,
                      tuple(sorted((k.removeprefix("partition."), None if v is None else str(v))
                                   for k, v in a.items() if k.startswith("partition."))),
                      a.get("num_records"))
            for a in adds]


class DeltaBatchReader(DataSourceReader):
    """Reads one snapshot: a partition per data file (or slice of a big one)."""

    def __init__(self, options: Mapping[str, str]) -> None:
        self.opts = DeltaStreamOptions(options)
        self.arrow_schema = table_arrow_schema(self.opts.path, self.opts.version_as_of)

    def partitions(self) -> list[InputPartition]:
        """The snapshot's files, planned on the driver."""
        return [p for f in snapshot_files(self.opts.path, self.opts.version_as_of)
                for p in split_file(f, self.opts.rows_per_partition)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        """Read one file (slice)."""
        assert isinstance(partition, DeltaFilePartition)
        yield from read_file(self.opts.path, partition.file, self.arrow_schema,
                             partition.start, partition.stop)


class DeltaStreamReader(DataSourceStreamReader):
    """Plans versions and files on the driver, reads files on executors."""

    def __init__(self, options: Mapping[str, str]) -> None:
        self.opts = DeltaStreamOptions(options)
        self.arrow_schema = table_arrow_schema(self.opts.path)
        self._log: DeltaLog | None = None
        # Spark 4.1 passes no start to latestOffset(); follow it from partitions()/commit().
        self._position: int | None = None

    @property
    def log(self) -> DeltaLog:
        """The table's log reader (created on the driver, never shipped to executors)."""
        if self._log is None:
            self._log = DeltaLog(self.opts.path)
        return self._log

    def initialOffset(self) -> dict:
        """Just before ``startingVersion``."""
        return {"version": self.opts.starting_version - 1}

    def latestOffset(self) -> dict:
        """The last version of the next batch, within the caps."""
        start = self._position if self._position is not None \
            else self.initialOffset()["version"]
        latest = self.log.latest_version()
        if latest <= start:
            return {"version": start}
        commits = {v: self.log.commit(v) for v in range(start + 1, latest + 1)}
        return {"version": plan_versions(start, latest, commits,
                                         self.opts.max_files, self.opts.max_rows)}

    def partitions(self, start: dict, end: dict) -> list[InputPartition]:
        """One partition per data file added in versions ``(start, end]``."""
        first, last = int(start["version"]) + 1, int(end["version"])
        self._position = last
        parts: list[InputPartition] = []
        for v in range(first, last + 1):
            commit = self.log.commit(v)
            if commit.removes_data:
                if not self.opts.skip_change_commits:
                    raise LakehouseError(
                        ErrorCode.DELTA_CHANGE_COMMIT,
                        f"version {v} of {self.opts.path} ({commit.operation}) removes or "
                        "rewrites data, which an append-only stream cannot follow",
                        hint="set skipChangeCommits=true to ignore such commits, or replay "
                             "the downstream table", table=self.opts.path, version=v)
                log.warning("skipping change commit %d (%s) of %s", v, commit.operation,
                            self.opts.path)
                continue
            for f in commit.added:
                parts.extend(split_file(f, self.opts.rows_per_partition))
        return parts

    def commit(self, end: dict) -> None:
        """Everything up to ``end`` is processed."""
        self._position = int(end["version"])
        self.log.forget_until(self._position)

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        """Read one data file, with its partition values and commit version as columns."""
        assert isinstance(partition, DeltaFilePartition)
        yield from read_file(self.opts.path, partition.file, self.arrow_schema,
                             partition.start, partition.stop)


def read_file(table_uri: str, file: AddedFile, schema: pa.Schema, start: int = 0,
              stop: int | None = None) -> Iterator[pa.RecordBatch]:
    """Rows ``[start, stop)`` of one added file, conformed to ``schema``."""
    import pyarrow.parquet as pq
    table_uri = table_uri.rstrip("/")
    location = file.path if "://" in file.path else f"{table_uri}/{file.path}"
    fs, path = filesystem(location)
    try:
        data = pq.read_table(path, filesystem=fs)
    except FileNotFoundError:
        raise LakehouseError(
            ErrorCode.DELTA_VERSION_GONE,
            f"data file {file.path} added in version {file.version} of {table_uri} is gone "
            "(removed by VACUUM)",
            hint="the stream needs versions that were vacuumed; restart it from a later "
                 "version (startingVersion) with a new checkpoint, or replay from Kafka",
            table=table_uri, version=file.version) from None
    if start or stop is not None:
        data = data.slice(start, (stop if stop is not None else data.num_rows) - start)
    n = data.num_rows
    values = dict(file.partition_values)
    columns = []
    for fld in schema:
        if fld.name == VERSION_COLUMN:
            columns.append(pa.array([file.version] * n, pa.int64()))  # null in snapshots
        elif fld.name in values:
            raw = values[fld.name]
            columns.append(pa.array([raw] * n, pa.string()).cast(fld.type))
        elif fld.name in data.column_names:
            columns.append(data.column(fld.name).cast(fld.type))
        else:  # added to the schema after this file was written
            columns.append(pa.nulls(n, fld.type))
    yield from pa.Table.from_arrays(columns, schema=schema).to_batches(max_chunksize=10_000)

