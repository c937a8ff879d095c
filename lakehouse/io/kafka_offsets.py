"""Kafka offsets as the project records them, and as a query's checkpoint holds them.

A range ``[start, end)`` is one Kafka partition's share of a batch (bronze commits record
them; ``lakehouse explain`` adds them up).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lakehouse.io.storage import file_names, join, read_text


@dataclass(frozen=True)
class OffsetRange:
    """Records ``[start, end)`` of one topic partition."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        """Number of offsets in the range (records plus any gaps)."""
        return max(0, self.end - self.start)


# -- a Kafka query's offsets, from its checkpoint ------------------------------------------
#
# Spark writes a micro-batch's end offsets to ``<checkpoint>/offsets/<batch id>`` before the
# batch runs (a write-ahead log: a version line, the batch's metadata, then one line per
# source, here the Kafka source's ``{topic: {partition: next offset}}``), and the offsets the
# query started from to ``<checkpoint>/sources/0/0`` (a NUL byte, a version line, the JSON).
# A batch covers its predecessor's end offsets (the start offsets for batch 0) to its own.

Offsets = dict[str, dict[str, int]]
"""``{topic: {partition: offset}}``, as Spark's Kafka source writes them."""


def parse_log_entry(text: str) -> Offsets:
    """The Kafka offsets in one offset-log or initial-offsets file: its last line (pure)."""
    lines = [ln for ln in text.strip("\x00\n ").splitlines() if ln.strip()]
    if len(lines) < 2 or not lines[0].lstrip("\x00").startswith("v"):
        raise ValueError(f"not a Spark offset log entry: {text[:80]!r}")
    offsets = json.loads(lines[-1])
    if not isinstance(offsets, dict):
        raise ValueError(f"not Kafka offsets: {lines[-1][:80]!r}")
    return {topic: {str(p): int(o) for p, o in parts.items()} for topic, parts in offsets.items()}


def ranges_between(start: Offsets, end: Offsets) -> list[OffsetRange]:
    """The non-empty ranges from ``start`` to ``end`` offsets, sorted (pure). A partition
    absent from ``start`` (added to the topic while the query ran) starts at 0."""
    out = [OffsetRange(topic, int(p), start.get(topic, {}).get(p, 0), stop)
           for topic, parts in end.items() for p, stop in parts.items()]
    return sorted((r for r in out if r.size), key=lambda r: (r.topic, r.partition))


def batch_ranges(checkpoint: str, batch_id: int) -> list[OffsetRange]:
    """The Kafka offset ranges micro-batch ``batch_id`` of the single-source query with
    this checkpoint covers: what Spark's offset log says, before the batch runs."""
    end = _read(join(checkpoint, "offsets", str(batch_id)))
    previous = join(checkpoint, "offsets", str(batch_id - 1)) if batch_id \
        else join(checkpoint, "sources", "0", "0")
    return ranges_between(_read(previous), end)


def committed_offsets(checkpoint: str) -> Offsets:
    """The offsets the query of this checkpoint has processed up to (its last committed
    batch's end offsets); empty before its first commit."""
    done = [int(n) for n in file_names(join(checkpoint, "commits")) if n.isdigit()]
    return _read(join(checkpoint, "offsets", str(max(done)))) if done else {}


def _read(uri: str) -> Offsets:
    return parse_log_entry(read_text(uri))
