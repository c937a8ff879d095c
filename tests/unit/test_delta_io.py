"""Delta I/O edges that need no Spark: idempotent appends and Arrow normalisation."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

from lakehouse.io.delta import IdempotentAppender, max_kafka_offsets, rebuild_nested

HEADERS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))


def spark_like_empty_headers(n: int) -> pa.Table:
    """All-empty header lists whose string/binary children have 0-byte offset buffers.

    pyarrow alone does not recreate the exact buffers Spark exported (delta-rs accepts
    these); the panic itself is covered end to end by the integration test
    ``test_deleted_checkpoint_does_not_land_records_twice``, whose late records carry no
    headers. Here: the rebuild keeps every value and the result appends."""
    empty = pa.py_buffer(b"")
    key = pa.Array.from_buffers(pa.string(), 0, [None, empty, empty])
    value = pa.Array.from_buffers(pa.binary(), 0, [None, empty, empty])
    struct = pa.StructArray.from_arrays([key, value], names=["key", "value"])
    headers = pa.ListArray.from_arrays(pa.array([0] * (n + 1), pa.int32()), struct, type=HEADERS)
    return pa.table({"topic": ["t"] * n, "partition": pa.array([0] * n, pa.int32()),
                     "offset": pa.array(range(n), pa.int64()), "headers": headers})


def test_rebuild_nested_makes_spark_batches_writable(tmp_path: Path) -> None:
    data = spark_like_empty_headers(5)
    fixed = rebuild_nested(data)
    assert fixed.equals(data)
    appender = IdempotentAppender(str(tmp_path / "t"), app_id="w")
    appender.append(pa.table({"topic": ["t"], "partition": pa.array([0], pa.int32()),
                              "offset": pa.array([99], pa.int64()),
                              "headers": pa.array([[{"key": "k", "value": b"v"}]], HEADERS)}),
                    batch_id=0, metadata={})
    assert appender.append(data, batch_id=1, metadata={}).written
    assert DeltaTable(str(tmp_path / "t")).to_pyarrow_table().num_rows == 6


def test_append_is_idempotent_per_batch(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    appender = IdempotentAppender(uri, app_id="writer-1")
    batch = spark_like_empty_headers(3)
    first = appender.append(batch, batch_id=0, metadata={"lakehouse.note": "x"})
    replay = appender.append(batch, batch_id=0, metadata={})
    assert first.written and first.version == 0
    assert not replay.written
    assert DeltaTable(uri).to_pyarrow_table().num_rows == 3
    assert appender.committed_version() == 0
    other = IdempotentAppender(uri, app_id="writer-2")
    assert other.append(batch, batch_id=0, metadata={}).written, "txn ids are per writer"
    assert max_kafka_offsets(uri) == {"t": {"0": 3}}
    history = DeltaTable(uri).history()
    assert history[-1]["lakehouse.note"] == "x" and history[-1]["lakehouse.batch_id"] == 0
