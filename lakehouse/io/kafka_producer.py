"""Producing records to Kafka with an idempotent producer, with progress output."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from confluent_kafka import KafkaError, Producer

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.generator import Record
from lakehouse.io.kafka_admin import MAX_RECORD_BYTES, client_config, made


def new_producer(bootstrap: str, properties: Mapping[str, str] | None = None) -> Producer:
    """An idempotent producer (acks from every in-sync replica, lz4 batches, records up to
    ``MAX_RECORD_BYTES``)."""
    return made(Producer, {**client_config(bootstrap, properties), "enable.idempotence": True,
                           "acks": "all", "linger.ms": 5, "compression.type": "lz4",
                           "message.max.bytes": MAX_RECORD_BYTES})


def produce(bootstrap: str, topic: str, records: Iterable[Record],
            properties: Mapping[str, str] | None = None,
            progress: Callable[[int], None] | None = None, progress_every: int = 10_000) -> int:
    """Send every record and wait for the broker to acknowledge all of them."""
    producer = new_producer(bootstrap, properties)
    failures: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures.append(err)

    sent = 0
    for record in records:
        while True:
            try:
                producer.produce(topic, value=record.value, key=record.key,
                                 headers=list(record.headers), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: let deliveries drain
        sent += 1
        if sent % 1000 == 0:
            producer.poll(0)
        if progress and sent % progress_every == 0:
            progress(sent)
    deadline = time.monotonic() + 60
    while producer.flush(1.0) > 0:
        if time.monotonic() > deadline:
            raise LakehouseError(ErrorCode.KAFKA_PRODUCE_FAILED,
                                 f"{len(producer)} records to {topic} not acknowledged in 60s",
                                 hint="is the broker up? `lakehouse broker status`")
    if failures:
        raise LakehouseError(ErrorCode.KAFKA_PRODUCE_FAILED,
                             f"{len(failures)} of {sent} records to {topic} failed: {failures[0]}",
                             hint="check the topic exists and the broker accepts writes")
    return sent
