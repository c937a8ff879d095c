"""Pure offset arithmetic for the Kafka stream reader (no I/O, unit-tested alone).

Offsets are Spark's Kafka JSON shape: ``{"topic": {"0": 42, "1": 17}}``, each number the
next offset to read. A range ``[start, end)`` is one Kafka partition's share of a batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lakehouse.errors import ErrorCode, LakehouseError

Offsets = dict[str, dict[str, int]]
"""topic -> partition (as a string, JSON keys) -> offset."""

EARLIEST = -2
LATEST = -1


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


def parse_starting_offsets(spec: str, topics: list[str]) -> dict[str, dict[int, int]] | str:
    """``earliest`` / ``latest`` as they are, or a JSON map validated against ``topics``.

    In the JSON map -2 means earliest and -1 latest, as in Spark's Kafka source.
    """
    spec = spec.strip()
    if spec in ("earliest", "latest"):
        return spec
    try:
        raw = json.loads(spec)
    except json.JSONDecodeError as exc:
        raise LakehouseError(ErrorCode.KAFKA_BAD_OPTION,
                             f"startingOffsets is neither earliest, latest nor JSON: {exc}",
                             hint='example: {"shop.orders.v1": {"0": 23, "1": -2}}') from exc
    if not isinstance(raw, dict):
        raise LakehouseError(ErrorCode.KAFKA_BAD_OPTION, "startingOffsets JSON must be an object")
    out: dict[str, dict[int, int]] = {}
    for topic, parts in raw.items():
        if topic not in topics:
            raise LakehouseError(ErrorCode.KAFKA_BAD_OPTION,
                                 f"startingOffsets names topic {topic!r}, which is not subscribed",
                                 hint=f"subscribed topics: {', '.join(topics)}")
        if not isinstance(parts, dict):
            raise LakehouseError(ErrorCode.KAFKA_BAD_OPTION,
                                 f"startingOffsets[{topic!r}] must map partition to offset")
        try:
            out[topic] = {int(p): int(o) for p, o in parts.items()}
        except (TypeError, ValueError) as exc:
            raise LakehouseError(ErrorCode.KAFKA_BAD_OPTION,
                                 f"startingOffsets[{topic!r}] has a non-integer entry") from exc
    return out


def resolve_start(spec: dict[str, dict[int, int]] | str,
                  bounds: dict[str, dict[int, tuple[int, int]]]) -> Offsets:
    """Concrete starting offsets, given each partition's (log start, high watermark)."""
    out: Offsets = {}
    for topic, parts in bounds.items():
        given = {} if isinstance(spec, str) else spec.get(topic, {})
        default = LATEST if spec == "latest" else EARLIEST
        out[topic] = {}
        for p, (low, high) in sorted(parts.items()):
            wanted = given.get(p, default)
            out[topic][str(p)] = low if wanted == EARLIEST else high if wanted == LATEST else wanted
    return out


def cap_offsets(start: Offsets, latest: Offsets, max_records: int | None) -> Offsets:
    """The end offsets of the next batch: ``latest``, capped at ``max_records`` in total.

    Partitions missing from ``start`` (added to the topic since) start at 0. The cap is
    shared in proportion to what each partition has waiting, with the rounding remainder
    going to the largest shares, so a batch holds exactly ``max_records`` offsets when
    more are waiting, and every partition with data advances over successive batches.
    """
    end: Offsets = {t: dict(parts) for t, parts in start.items()}
    waiting: list[tuple[str, str, int, int]] = []  # topic, partition, from, available
    for topic, parts in latest.items():
        for p, high in parts.items():
            begin = start.get(topic, {}).get(p, 0)
            end.setdefault(topic, {})[p] = max(begin, high)
            if high > begin:
                waiting.append((topic, p, begin, high - begin))
    total = sum(w[3] for w in waiting)
    if not max_records or total <= max_records:
        return _sorted(end)
    shares = [(max_records * avail / total, i) for i, (_, _, _, avail) in enumerate(waiting)]
    counts = [int(share) for share, _ in shares]
    remainder = max_records - sum(counts)
    by_fraction = sorted(shares, key=lambda s: (-(s[0] - int(s[0])), s[1]))
    for _, i in by_fraction[:remainder]:
        counts[i] += 1
    for (topic, p, begin, avail), n in zip(waiting, counts, strict=True):
        end[topic][p] = begin + min(n, avail)
    return _sorted(end)


def plan_ranges(start: Offsets, end: Offsets) -> list[OffsetRange]:
    """One range per partition that has offsets to read between ``start`` and ``end``."""
    ranges = []
    for topic, parts in sorted(end.items()):
        for p, stop in sorted(parts.items(), key=lambda kv: int(kv[0])):
            begin = start.get(topic, {}).get(p, 0)
            if stop > begin:
                ranges.append(OffsetRange(topic, int(p), begin, stop))
    return ranges


def total_records(start: Offsets, end: Offsets) -> int:
    """Offsets between two positions (an upper bound on records: gaps count too)."""
    return sum(r.size for r in plan_ranges(start, end))


def _sorted(offsets: Offsets) -> Offsets:
    return {t: dict(sorted(parts.items(), key=lambda kv: int(kv[0])))
            for t, parts in sorted(offsets.items())}


def ranges_in(table: Any) -> list[dict[str, Any]]:
    """The Kafka coordinates an Arrow batch holds: per topic partition, first/last offset
    and record count (commit metadata, so a table version can be traced to Kafka)."""
    import pyarrow.compute as pc  # noqa: F401  (pyarrow registers the kernels)

    if table.num_rows == 0:
        return []
    grouped = table.group_by(["topic", "partition"]).aggregate(
        [("offset", "min"), ("offset", "max"), ("offset", "count")]).to_pylist()
    return sorted(({"topic": g["topic"], "partition": g["partition"],
                    "from": g["offset_min"], "to": g["offset_max"] + 1,
                    "records": g["offset_count"]} for g in grouped),
                  key=lambda r: (r["topic"], r["partition"]))
