"""``kafka-py``: a Spark streaming source over confluent-kafka (Python Data Source API).

Produces exactly the columns of Spark's built-in Kafka source::

    key binary, value binary, topic string, partition int, offset long,
    timestamp timestamp, timestampType int, headers array<struct<key string, value binary>>

Progress lives only in Spark's checkpoint (its offset log), never in a consumer group.
Each Spark input partition reads one Kafka partition's ``[start, end)`` range and stops
exactly at ``end``, even when the range ends in a gap (transaction markers, compaction).

Options (Spark's names where Spark has one):

``kafka.bootstrap.servers`` (required), ``subscribe`` (comma-separated topics, required),
``startingOffsets`` (earliest | latest | JSON, default earliest), ``maxOffsetsPerTrigger``,
``failOnDataLoss`` (default true), ``pollTimeoutMs`` (default 120000),
``progressGroup`` (commit processed offsets to this consumer group, for lag monitoring only),
``dataLossLog`` (append skipped ranges as JSON lines here when failOnDataLoss is false),
and any other ``kafka.*`` option, passed to librdkafka without the prefix.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyspark.sql.datasource import (
    DataSource,
    DataSourceStreamReader,
    InputPartition,
)
from pyspark.sql.types import StructType

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.kafka_offsets import (
    OffsetRange,
    Offsets,
    cap_offsets,
    parse_starting_offsets,
    plan_ranges,
    resolve_start,
)

log = logging.getLogger(__name__)

FORMAT_NAME = "kafka-py"

KAFKA_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset long, "
    "timestamp timestamp, timestampType int, "
    "headers array<struct<key: string, value: binary>>"
)

ARROW_SCHEMA = pa.schema([
    ("key", pa.binary()),
    ("value", pa.binary()),
    ("topic", pa.string()),
    ("partition", pa.int32()),
    ("offset", pa.int64()),
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("timestampType", pa.int32()),
    ("headers", pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
])

ARROW_BATCH_ROWS = 10_000
CONSUME_BATCH = 1_000

# confluent-kafka timestamp types -> Kafka's TimestampType ids, as Spark reports them.
_TIMESTAMP_TYPES = {0: -1, 1: 0, 2: 1}


class KafkaPartition(InputPartition):
    """One Kafka partition's offset range, read by one Spark task."""

    def __init__(self, offset_range: OffsetRange) -> None:
        super().__init__(offset_range)
        self.range = offset_range


class KafkaOptions:
    """The source's options, validated once on the driver."""

    def __init__(self, options: Mapping[str, str]) -> None:
        opts = {k.lower(): v for k, v in options.items()}
        self.bootstrap = opts.get("kafka.bootstrap.servers", "")
        if not self.bootstrap:
            raise LakehouseError(ErrorCode.KAFKA_BAD_OPTION,
                                 "option kafka.bootstrap.servers is required")
        self.topics = [t.strip() for t in opts.get("subscribe", "").split(",") if t.strip()]
        if not self.topics:
            raise LakehouseError(ErrorCode.KAFKA_BAD_OPTION,
                                 "option subscribe is required (comma-separated topics)")
        self.starting = parse_starting_offsets(opts.get("startingoffsets", "earliest"), self.topics)
        self.max_offsets = _int_option(opts, "maxoffsetspertrigger", 0) or None
        self.fail_on_data_loss = opts.get("failondataloss", "true").lower() != "false"
        self.poll_timeout_s = _int_option(opts, "polltimeoutms", 120_000) / 1000.0
        self.progress_group = opts.get("progressgroup", "")
        self.data_loss_log = opts.get("datalosslog", "")
        # Keys keep their original case: librdkafka property names are lower-case anyway.
        self.client_properties = {
            k[len("kafka."):]: v for k, v in options.items()
            if k.lower().startswith("kafka.") and k.lower() != "kafka.bootstrap.servers"}


def _int_option(opts: Mapping[str, str], key: str, default: int) -> int:
    raw = opts.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise LakehouseError(ErrorCode.KAFKA_BAD_OPTION,
                             f"option {key} must be an integer, got {raw!r}") from exc
    if value < 0:
        raise LakehouseError(ErrorCode.KAFKA_BAD_OPTION, f"option {key} must not be negative")
    return value


class KafkaDataSource(DataSource):
    """Registers as ``spark.readStream.format("kafka-py")``."""

    @classmethod
    def name(cls) -> str:
        """The format name."""
        return FORMAT_NAME

    def schema(self) -> str:
        """Spark's Kafka source columns."""
        return KAFKA_SCHEMA

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        """The micro-batch reader."""
        return KafkaStreamReader(self.options)


class KafkaStreamReader(DataSourceStreamReader):
    """Plans offset ranges on the driver and reads them on executors."""

    def __init__(self, options: Mapping[str, str]) -> None:
        self.opts = KafkaOptions(options)
        self._consumer: Any = None
        self._initial: Offsets | None = None
        # Where the next batch starts. Spark 4.1 passes no start to latestOffset(), so the
        # reader follows it from partitions()/commit(); Spark re-plans the last committed
        # batch through partitions() on restart, before asking for the latest offset.
        self._position: Offsets | None = None
        # Watermarks fetched by latestOffset(), reused by the partitions() call that
        # follows it, so each batch asks the brokers once.
        self._fresh_bounds: dict[str, dict[int, tuple[int, int]]] | None = None

    # -- driver side -------------------------------------------------------------------

    def _metadata(self) -> Any:
        if self._consumer is None:
            from lakehouse.io.kafka_admin import metadata_consumer
            self._consumer = metadata_consumer(self.opts.bootstrap, self.opts.client_properties)
        return self._consumer

    def _bounds(self) -> dict[str, dict[int, tuple[int, int]]]:
        from lakehouse.io.kafka_admin import topic_partitions, watermarks
        consumer = self._metadata()
        return {topic: watermarks(consumer, topic,
                                  topic_partitions(consumer, self.opts.bootstrap, topic))
                for topic in self.opts.topics}

    def initialOffset(self) -> dict:
        """Where a new query starts: startingOffsets resolved once against the brokers."""
        if self._initial is None:
            self._initial = resolve_start(self.opts.starting, self._bounds())
        return self._initial

    def latestOffset(self) -> dict:
        """The end of the next batch: the high watermarks, capped by maxOffsetsPerTrigger."""
        bounds = self._fresh_bounds = self._bounds()
        latest = {t: {str(p): high for p, (_, high) in parts.items()}
                  for t, parts in bounds.items()}
        start = self._position if self._position is not None else self.initialOffset()
        return cap_offsets(start, latest, self.opts.max_offsets)

    def partitions(self, start: dict, end: dict) -> list[InputPartition]:
        """One input partition per Kafka partition with offsets in ``[start, end)``."""
        self._position = end
        ranges = plan_ranges(start, end)
        for topic, parts in start.items():
            for p, begin in parts.items():
                stop = end.get(topic, {}).get(p)
                if stop is None or stop < begin:
                    self._data_loss(topic, int(p), begin, stop if stop is not None else begin,
                                    "the partition's offsets went backwards "
                                    "(topic deleted and recreated?)")
        bounds, self._fresh_bounds = self._fresh_bounds, None
        if not ranges:
            return []
        bounds = bounds or self._bounds()
        checked = []
        for r in ranges:
            low = bounds.get(r.topic, {}).get(r.partition, (0, 0))[0]
            if r.start < low:
                self._data_loss(r.topic, r.partition, r.start, min(low, r.end),
                                f"offsets {r.start}..{min(low, r.end) - 1} were deleted "
                                f"(log start is now {low})")
                if low >= r.end:
                    continue
                r = OffsetRange(r.topic, r.partition, low, r.end)
            checked.append(r)
        return [KafkaPartition(r) for r in checked]

    def _data_loss(self, topic: str, partition: int, start: int, stop: int, why: str) -> None:
        if self.opts.fail_on_data_loss:
            raise LakehouseError(
                ErrorCode.KAFKA_DATA_LOSS,
                f"data loss on {topic}[{partition}]: {why}",
                hint="the records are gone from Kafka (retention or deletion). To skip them and "
                     "continue, set failOnDataLoss=false (streaming.fail_on_data_loss: false); "
                     "the skipped ranges are then logged",
                topic=topic, partition=partition, start=start, stop=stop)
        lost = max(0, stop - start)
        log.warning("data loss on %s[%d]: %s; skipping %d offsets", topic, partition, why, lost)
        if self.opts.data_loss_log:
            entry = {"at": datetime.now(UTC).isoformat(), "topic": topic, "partition": partition,
                     "from": start, "to": stop, "lost_offsets": lost, "reason": why}
            path = Path(self.opts.data_loss_log)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")

    def commit(self, end: dict) -> None:
        """Spark finished everything up to ``end``; optionally publish it for lag monitoring."""
        self._position = end
        if not self.opts.progress_group:
            return
        from confluent_kafka import Consumer, TopicPartition

        from lakehouse.io.kafka_admin import client_config
        conf = client_config(self.opts.bootstrap, self.opts.client_properties)
        conf.update({"group.id": self.opts.progress_group, "enable.auto.commit": False})
        consumer = Consumer(conf)
        try:
            consumer.commit(offsets=[TopicPartition(t, int(p), int(o))
                                     for t, parts in end.items() for p, o in parts.items()],
                            asynchronous=False)
        except Exception as exc:  # progress publishing is advisory; never fail the query
            log.warning("could not publish progress to group %s: %s", self.opts.progress_group, exc)
        finally:
            consumer.close()

    def stop(self) -> None:
        """Release the metadata consumer."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # -- executor side -----------------------------------------------------------------

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        """Read exactly ``[start, end)`` of one Kafka partition as Arrow batches."""
        assert isinstance(partition, KafkaPartition)
        yield from read_range(partition.range, self.opts.bootstrap, self.opts.client_properties,
                              self.opts.poll_timeout_s)


def read_range(r: OffsetRange, bootstrap: str, properties: Mapping[str, str],
               poll_timeout_s: float) -> Iterator[pa.RecordBatch]:
    """Consume one partition from ``r.start`` up to, not including, ``r.end``."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from lakehouse.io.kafka_admin import client_config
    conf = client_config(bootstrap, properties)
    conf.update({
        "group.id": f"lakehouse-reader-{uuid.uuid4().hex[:8]}",  # required, never used
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
    })
    consumer = Consumer(conf)
    tp = TopicPartition(r.topic, r.partition, r.start)
    consumer.assign([tp])
    rows = _Columns()
    last_progress = time.monotonic()
    try:
        done = r.start >= r.end
        while not done:
            msgs = consumer.consume(CONSUME_BATCH, timeout=1.0)
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pos = consumer.position([tp])[0].offset
                        if pos >= r.end:
                            done = True
                            break
                        continue
                    if err.code() == KafkaError._AUTO_OFFSET_RESET:
                        raise LakehouseError(
                            ErrorCode.KAFKA_DATA_LOSS,
                            f"data loss on {r.topic}[{r.partition}]: offset {r.start} is no "
                            f"longer in Kafka ({err.str()})",
                            hint="set failOnDataLoss=false to skip deleted records",
                            topic=r.topic, partition=r.partition, start=r.start, stop=r.end)
                    raise LakehouseError(ErrorCode.STREAM_FAILED,
                                         f"reading {r.topic}[{r.partition}] failed: {err.str()}")
                offset = msg.offset()
                assert offset is not None  # data messages always have one
                if offset >= r.end:
                    done = True
                    break
                rows.add(msg, _TIMESTAMP_TYPES)
                last_progress = time.monotonic()
                if offset >= r.end - 1:
                    done = True
                    break
            if len(rows) >= ARROW_BATCH_ROWS:
                yield rows.flush()
            if not done and not msgs:
                # A range may end in a gap: the consumer's position moves past markers.
                if consumer.position([tp])[0].offset >= r.end:
                    break
                if time.monotonic() - last_progress > poll_timeout_s:
                    raise LakehouseError(
                        ErrorCode.KAFKA_READ_TIMEOUT,
                        f"no progress reading {r.topic}[{r.partition}] offsets "
                        f"[{r.start}, {r.end}) for {poll_timeout_s:.0f}s",
                        hint="check the broker is up and the partition's leader is available; "
                             "raise pollTimeoutMs for slow clusters",
                        topic=r.topic, partition=r.partition)
        if len(rows):
            yield rows.flush()
    finally:
        consumer.close()


class _Columns:
    """Column buffers for one Arrow batch."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.key: list = []
        self.value: list = []
        self.topic: list = []
        self.partition: list = []
        self.offset: list = []
        self.ts: list = []
        self.ts_type: list = []
        self.headers: list = []

    def __len__(self) -> int:
        return len(self.offset)

    def add(self, msg: Any, ts_types: Mapping[int, int]) -> None:
        ts_kind, ts_ms = msg.timestamp()
        self.key.append(msg.key())
        self.value.append(msg.value())
        self.topic.append(msg.topic())
        self.partition.append(msg.partition())
        self.offset.append(msg.offset())
        self.ts.append(ts_ms * 1000 if ts_kind != 0 else None)
        self.ts_type.append(ts_types.get(ts_kind, -1))
        self.headers.append([{"key": k, "value": v} for k, v in (msg.headers() or [])])

    def flush(self) -> pa.RecordBatch:
        batch = pa.RecordBatch.from_arrays([
            pa.array(self.key, pa.binary()),
            pa.array(self.value, pa.binary()),
            pa.array(self.topic, pa.string()),
            pa.array(self.partition, pa.int32()),
            pa.array(self.offset, pa.int64()),
            pa.array(self.ts, pa.timestamp("us", tz="UTC")),
            pa.array(self.ts_type, pa.int32()),
            pa.array(self.headers, ARROW_SCHEMA.field("headers").type),
        ], schema=ARROW_SCHEMA)
        self._reset()
        return batch
