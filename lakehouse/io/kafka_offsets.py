"""Kafka offsets as the project records them (pure).

A range ``[start, end)`` is one Kafka partition's share of a batch (bronze commits record
them; ``lakehouse explain`` adds them up).
"""

from __future__ import annotations

from dataclasses import dataclass


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
