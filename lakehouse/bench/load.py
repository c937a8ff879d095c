"""Steady load for the freshness measurement: events produced at a fixed rate, and the
bronze query's consumer lag sampled while they flow."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.generator import Record
from lakehouse.io.kafka_admin import metadata_consumer, topic_partitions, watermarks
from lakehouse.io.kafka_offsets import committed_offsets
from lakehouse.io.kafka_producer import new_producer

TICK = 0.1
"""Seconds between two bursts of the paced producer."""


@dataclass(frozen=True)
class Paced:
    """What a paced run produced."""

    records: int
    seconds: float
    behind_seconds: float
    """How far the producer fell behind its schedule at worst (it could not keep up)."""


def produce_paced(bootstrap: str, topic: str, records: Iterator[Record], rate: int,
                  seconds: float) -> Paced:
    """Produce ``rate`` records per second for ``seconds`` seconds, in bursts every
    ``TICK``; each record's Kafka timestamp is its produce time."""
    producer = new_producer(bootstrap)
    per_tick = max(1, round(rate * TICK))
    ticks = round(seconds / TICK)
    started = time.monotonic()
    sent, behind = 0, 0.0
    for tick in range(ticks):
        due = started + tick * TICK
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        behind = max(behind, now - due)
        for record in (next(records) for _ in range(per_tick)):
            while True:
                try:
                    producer.produce(topic, value=record.value, key=record.key,
                                     headers=list(record.headers))
                    break
                except BufferError:
                    producer.poll(0.05)
        sent += per_tick
        producer.poll(0)
    if producer.flush(60) > 0:
        raise LakehouseError(ErrorCode.KAFKA_PRODUCE_FAILED,
                             f"{len(producer)} records to {topic} not acknowledged in 60s")
    return Paced(sent, time.monotonic() - started, behind)


class LagSampler:
    """Every second: the topic's latest offsets minus what the bronze query committed."""

    def __init__(self, bootstrap: str, topic: str, checkpoint: str) -> None:
        self.consumer = metadata_consumer(bootstrap)
        self.topic = topic
        self.checkpoint = checkpoint
        self.partitions = topic_partitions(self.consumer, bootstrap, topic)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-lag", daemon=True)

    def lag(self) -> int:
        """Records produced to the topic that the bronze query has not committed."""
        done = committed_offsets(self.checkpoint).get(self.topic, {})
        marks = watermarks(self.consumer, self.topic, self.partitions, timeout=10)
        return sum(high - int(done.get(str(p), 0)) for p, (_, high) in marks.items())

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.consumer.close()

    def _loop(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(1.0):
            try:
                self.samples.append((time.monotonic() - started, self.lag()))
            except (OSError, ValueError, IndexError):
                continue  # a checkpoint file being written: the next sample reads it
