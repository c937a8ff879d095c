"""Digests of a commit's rows: what the chain of a table's versions (``lakehouse.io.chain``)
holds of the data, and what ``lakehouse audit verify`` recomputes from the data files.

A row's hash is the SHA-256 of its canonical JSON (columns by name, timestamps as
microseconds). A set of rows digests to its count and the sums of four 60-bit slices of
its rows' hashes: independent of order and of how the rows were split into files or
tasks, so it is computed on the executors in the pass that writes the rows
(``Dataset.observe``), merged from per-file digests when it is checked, and subtracted
when files leave a table. Two schemes, one per writer: ``spark`` for rows Spark writes
(the data), ``arrow`` for the few rows the driver writes with delta-rs (ledger lines),
which are hashed in Python; a version's link records which one it used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

SLICES = 4
"""60-bit slices of a row's SHA-256 summed per digest (240 of its 256 bits)."""
SLICE_HEX = 15
SPARK = "spark"
ARROW = "arrow"


@dataclass(frozen=True)
class RowsDigest:
    """The digest of a multiset of rows (pure; ``+`` and ``-`` merge and remove)."""

    rows: int
    sums: tuple[int, ...] = (0,) * SLICES

    def __add__(self, other: RowsDigest) -> RowsDigest:
        return RowsDigest(self.rows + other.rows,
                          tuple(a + b for a, b in zip(self.sums, other.sums, strict=True)))

    def __sub__(self, other: RowsDigest) -> RowsDigest:
        return RowsDigest(self.rows - other.rows,
                          tuple(a - b for a, b in zip(self.sums, other.sums, strict=True)))

    def text(self) -> str:
        """The canonical text the chain hashes: ``rows:sum:sum:sum:sum`` in hex."""
        return ":".join([str(self.rows), *(format(s, "x") for s in self.sums)])

    @classmethod
    def parse(cls, text: str) -> RowsDigest:
        """The digest ``text`` wrote."""
        rows, *sums = text.split(":")
        return cls(int(rows), tuple(int(s, 16) for s in sums))

    @classmethod
    def of(cls, metrics: Mapping[str, Any]) -> RowsDigest:
        """The digest from the aggregates ``digest_columns`` named (a null sum: no rows)."""
        return cls(int(metrics.get("_rows") or 0),
                   tuple(int(metrics.get(f"_s{i}") or 0) for i in range(SLICES)))


ZERO = RowsDigest(0)


def merged(digests: Sequence[RowsDigest]) -> RowsDigest:
    """The digest of the union of the rows of ``digests``."""
    total = ZERO
    for d in digests:
        total = total + d
    return total


# -- spark: on the executors -------------------------------------------------------------

def digest_columns(schema: Any, exclude: Sequence[str] = ()) -> list[Any]:
    """The aggregate columns (``_rows``, ``_s0``..``_s3``) of the digest of a DataFrame's
    rows with this (Spark) schema, over its columns but ``exclude`` (partition columns,
    whose values the log entry holds, not the files)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampNTZType, TimestampType
    fields = sorted((f for f in schema.fields if f.name not in set(exclude)),
                    key=lambda f: f.name)
    cols = [F.unix_micros(F.col(f"`{f.name}`").cast("timestamp")).alias(f.name)
            if isinstance(f.dataType, TimestampType | TimestampNTZType)
            else F.col(f"`{f.name}`") for f in fields]
    row = F.sha2(F.to_json(F.struct(*cols), {"ignoreNullFields": "true"}), 256)
    slices = [F.conv(F.substring(row, 1 + i * SLICE_HEX, SLICE_HEX), 16, 10)
              .cast("decimal(38,0)") for i in range(SLICES)]
    return [F.count(F.lit(1)).alias("_rows"),
            *[F.sum(s).alias(f"_s{i}") for i, s in enumerate(slices)]]


def spark_file_digests(spark: Any, files: Sequence[str], schema: Any,
                       exclude: Sequence[str] = (), unreadable: bool = False
                       ) -> dict[str, RowsDigest]:
    """Each of ``files`` (Parquet data files of one table, ``schema`` its Spark schema)
    with the digest of its rows: one Spark job, only the digests reach the driver. Keys
    are the paths as given. ``unreadable``: a file Spark cannot read (corrupt, its
    checksum wrong) digests to what could be read of it, instead of failing the job."""
    from urllib.parse import unquote

    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType
    if not files:
        return {}
    data = StructType([f for f in schema.fields if f.name not in set(exclude)])
    read = (spark.read.schema(data).option("ignoreCorruptFiles", str(unreadable).lower())
            .parquet(*files))
    rows = (read.withColumn("_file", F.col("_metadata.file_path")).groupBy("_file")
            .agg(*digest_columns(data)).collect())
    found = {_bare(unquote(r["_file"])): RowsDigest.of(r.asDict()) for r in rows}
    return {f: found.get(_bare(unquote(f)), ZERO) for f in files}


def _bare(path: str) -> str:
    for prefix in ("file://", "file:"):
        if path.startswith(prefix):
            return "/" + path[len(prefix):].lstrip("/")
    return path.replace("s3a://", "s3://")


# -- arrow: the driver's own few rows ----------------------------------------------------

def arrow_digest(rows: pa.Table, exclude: Sequence[str] = ()) -> RowsDigest:
    """The digest of a few rows the driver holds (``arrow`` scheme)."""
    names = sorted(n for n in rows.column_names if n not in set(exclude))
    total = ZERO
    for row in rows.select(names).to_pylist():
        text = json.dumps({k: v for k, v in row.items() if v is not None}, sort_keys=True,
                          separators=(",", ":"), default=str)
        h = hashlib.sha256(text.encode()).hexdigest()
        total = total + RowsDigest(1, tuple(int(h[i * SLICE_HEX:(i + 1) * SLICE_HEX], 16)
                                            for i in range(SLICES)))
    return total


def arrow_file_digests(files: Sequence[str], exclude: Sequence[str] = (),
                       unreadable: bool = False) -> dict[str, RowsDigest]:
    """Each of ``files`` (Parquet data files of a table the driver writes) with the digest
    of its rows, read on the driver (``arrow`` scheme: ledger lines, a few rows each).
    ``unreadable``: a file that cannot be read digests to no rows instead of failing."""
    import pyarrow.parquet as pq

    from lakehouse.io.storage import filesystem
    digests = {}
    for uri in files:
        fs, path = filesystem(uri)
        try:
            digests[uri] = arrow_digest(pq.read_table(path, filesystem=fs), exclude)
        except (OSError, pa.ArrowException):
            if not unreadable:
                raise
            digests[uri] = ZERO
    return digests
