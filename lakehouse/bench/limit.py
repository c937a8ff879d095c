"""The machine's limit for landing a topic, without Spark: the ceiling bronze is held to.

Two measurements of the same records on the same broker:

* ``kafka_consume``: Kafka's own consumer (``kafka-consumer-perf-test``'s class,
  ``org.apache.kafka.tools.ConsumerPerformance``, from the broker's jars) reading the
  topic from the start and discarding the records: what the broker and its client can
  deliver to one process.
* ``consume_to_parquet``: confluent-kafka reading the topic from the start, each batch
  of records becoming an Arrow table (value, key, topic, partition, offset, timestamp)
  written to Parquet with pyarrow: consume plus a plain columnar write, no Spark, no
  Delta, no transaction log. This is the limit bronze's rate is compared with.
"""

from __future__ import annotations

import csv
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaError, TopicPartition

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.kafka_admin import client_config
from lakehouse.io.storage import filesystem
from lakehouse.jvm import JarSet, jars, java

LOG4J = "rootLogger.level = ERROR\nrootLogger.appenderRef.err.ref = err\n" \
        "appender.err.type = Console\nappender.err.name = err\nappender.err.target = SYSTEM_ERR\n" \
        "appender.err.layout.type = PatternLayout\nappender.err.layout.pattern = %m%n\n"


@dataclass(frozen=True)
class Rate:
    """Records processed in some seconds."""

    records: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def parse_perf_summary(output: str) -> Rate:
    """The records and fetch time of ConsumerPerformance's summary line (pure): the rate
    without its consumer-group join."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    header = next((i for i, ln in enumerate(lines) if ln.startswith("start.time")), len(lines))
    values = next(csv.DictReader(lines[header:], skipinitialspace=True), None)
    if values is None:
        raise ValueError(f"no ConsumerPerformance summary in: {output[-500:]!r}")
    return Rate(int(values["data.consumed.in.nMsg"]), int(values["fetch.time.ms"]) / 1000)


def kafka_consume(bootstrap: str, topic: str, records: int, work_dir: Path) -> Rate:
    """Kafka's own consumer reading ``records`` records of ``topic`` from the start."""
    work_dir.mkdir(parents=True, exist_ok=True)
    log4j = work_dir / "tools-log4j2.properties"
    log4j.write_text(LOG4J)
    classpath = ":".join(str(j) for j in jars(JarSet.BROKER))
    command = [str(java()), "-Xmx512m", "-XX:+UseSerialGC",
               f"-Dlog4j2.configurationFile=file:{log4j}", "-cp", classpath,
               "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bootstrap,
               "--topic", topic, "--num-records", str(records), "--timeout", "30000",
               "--group", f"bench-{uuid.uuid4().hex[:8]}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or "WARNING: Exiting before" in done.stdout + done.stderr:
        raise LakehouseError(ErrorCode.BENCH_FAILED,
                             f"Kafka's consumer did not read {records:,} records of {topic}",
                             hint=(done.stderr or done.stdout)[-1500:])
    return parse_perf_summary(done.stdout)


def consume_to_parquet(bootstrap: str, topic: str, records: int, out_dir: str,
                       batch: int = 50_000) -> Rate:
    """confluent-kafka reading ``records`` records of ``topic`` from the start, written
    to Parquet files of ``batch`` records with pyarrow, in ``out_dir`` (a folder or an
    object-store URI: where the warehouse is)."""
    fs, folder = filesystem(out_dir)
    fs.create_dir(folder, recursive=True)
    conf = client_config(bootstrap, None)
    conf.update({"group.id": f"bench-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                 "auto.offset.reset": "earliest", "fetch.max.bytes": 52_428_800,
                 "max.partition.fetch.bytes": 10_485_760})
    consumer = Consumer(conf)
    meta = consumer.list_topics(topic, timeout=30).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    got, files = 0, 0
    started = time.monotonic()
    deadline = started + 600
    try:
        while got < records:
            if time.monotonic() > deadline:
                raise LakehouseError(ErrorCode.BENCH_FAILED,
                                     f"read only {got:,} of {records:,} records of {topic}")
            messages = consumer.consume(min(batch, records - got), timeout=1.0)
            rows = [m for m in messages if m.error() is None]
            errors = [e for m in messages if (e := m.error()) is not None
                      and e.code() != KafkaError._PARTITION_EOF]
            if errors:
                raise LakehouseError(ErrorCode.BENCH_FAILED, f"consuming {topic}: {errors[0]}")
            if not rows:
                continue
            table = pa.table({
                "key": pa.array([m.key() for m in rows], pa.binary()),
                "value": pa.array([m.value() for m in rows], pa.binary()),
                "topic": pa.array([topic] * len(rows), pa.string()),
                "partition": pa.array([m.partition() for m in rows], pa.int32()),
                "offset": pa.array([m.offset() for m in rows], pa.int64()),
                "timestamp": pa.array([m.timestamp()[1] for m in rows], pa.timestamp("ms")),
            })
            pq.write_table(table, f"{folder}/part-{files:05d}.parquet", compression="snappy",
                           filesystem=fs)
            files += 1
            got += len(rows)
    finally:
        consumer.close()
    return Rate(got, time.monotonic() - started)
