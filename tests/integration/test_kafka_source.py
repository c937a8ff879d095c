"""The kafka-py streaming source against a real broker process and real Spark."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions

from lakehouse.errors import ErrorCode
from lakehouse.io.kafka_admin import TopicSpec, ensure_topics

pytestmark = pytest.mark.integration


def new_topic(bootstrap: str, partitions: int) -> str:
    name = f"t.{uuid.uuid4().hex[:10]}"
    ensure_topics(bootstrap, [TopicSpec(name, partitions)])
    return name


def produce(bootstrap: str, topic: str, n: int, partitions: int, start: int = 0) -> list[dict]:
    """Produce n keyed records with headers; return what the broker acknowledged."""
    acked: list[dict] = []
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})

    def done(err, msg) -> None:  # type: ignore[no-untyped-def]
        assert err is None, err
        acked.append({"key": msg.key(), "value": msg.value(), "partition": msg.partition(),
                      "offset": msg.offset(),
                      # delivery reports carry no headers: rebuild what was sent
                      "headers": [("trace", b"tr-" + msg.key()[1:]), ("empty", None)]})

    for i in range(start, start + n):
        payload = b'{"same": true}' if i % 3 == 0 else json.dumps({"i": i}).encode()
        p.produce(topic, key=f"k{i}".encode(), value=payload, partition=i % partitions,
                  headers=[("trace", f"tr-{i}".encode()), ("empty", None)], on_delivery=done)
    p.flush(30)
    assert len(acked) == n
    return acked


def read_stream(spark, checkpoint: Path, **options: str) -> list[pa.Table]:  # type: ignore[no-untyped-def]
    """Run the source until it has nothing more; return each micro-batch as Arrow."""
    batches: list[pa.Table] = []
    df = spark.readStream.format("kafka-py").options(**options).load()
    q = (df.writeStream.foreachBatch(lambda b, _id: batches.append(b.toArrow()))
         .option("checkpointLocation", str(checkpoint))
         .trigger(processingTime="0 seconds").start())
    try:
        q.processAllAvailable()
    finally:
        q.stop()
    return batches


def test_schema_matches_spark_kafka_source(spark, broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    topic = new_topic(broker, 1)
    df = spark.readStream.format("kafka-py").option("kafka.bootstrap.servers", broker) \
        .option("subscribe", topic).load()
    assert df.schema.simpleString() == (
        "struct<key:binary,value:binary,topic:string,partition:int,offset:bigint,"
        "timestamp:timestamp,timestampType:int,headers:array<struct<key:string,value:binary>>>")


def test_bounded_read_returns_exactly_what_was_produced(spark, broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    topic = new_topic(broker, 4)
    acked = produce(broker, topic, 1000, 4)
    batches = read_stream(spark, tmp_path / "ck", **{"kafka.bootstrap.servers": broker,
                                                     "subscribe": topic})
    rows = pa.concat_tables(batches).to_pylist()
    assert len(rows) == 1000
    got = {(r["partition"], r["offset"]): r for r in rows}
    assert len(got) == 1000, "each (partition, offset) once"
    for a in acked:
        r = got[(a["partition"], a["offset"])]
        assert (r["key"], r["value"], r["topic"]) == (a["key"], a["value"], topic)
        assert [(h["key"], h["value"]) for h in r["headers"]] == a["headers"]
        assert r["timestampType"] == 0 and r["timestamp"] is not None


def test_cap_splits_work_across_batches_and_restart_resumes(spark, broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    topic = new_topic(broker, 3)
    produce(broker, topic, 1000, 3)
    opts = {"kafka.bootstrap.servers": broker, "subscribe": topic, "maxOffsetsPerTrigger": "300"}
    batches = read_stream(spark, tmp_path / "ck", **opts)
    assert [b.num_rows for b in batches] == [300, 300, 300, 100]
    # More data, same checkpoint: only the new records, still capped.
    produce(broker, topic, 450, 3, start=1000)
    again = read_stream(spark, tmp_path / "ck", **opts)
    assert [b.num_rows for b in again] == [300, 150]
    offsets = [(r["partition"], r["offset"])
               for t in batches + again for r in t.select(["partition", "offset"]).to_pylist()]
    assert len(offsets) == len(set(offsets)) == 1450


def test_added_partitions_are_picked_up(spark, broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    topic = new_topic(broker, 2)
    produce(broker, topic, 20, 2)
    opts = {"kafka.bootstrap.servers": broker, "subscribe": topic}
    assert sum(b.num_rows for b in read_stream(spark, tmp_path / "ck", **opts)) == 20
    admin = AdminClient({"bootstrap.servers": broker})
    for f in admin.create_partitions([NewPartitions(topic, 3)]).values():
        f.result()
    produce(broker, topic, 30, 3)
    rows = pa.concat_tables(read_stream(spark, tmp_path / "ck", **opts)).to_pylist()
    assert len(rows) == 30
    assert {r["partition"] for r in rows} == {0, 1, 2}


def test_missing_topic_is_a_clear_error(spark, broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception, match=ErrorCode.TOPIC_NOT_FOUND.value):
        read_stream(spark, tmp_path / "ck", **{"kafka.bootstrap.servers": broker,
                                               "subscribe": "no.such.topic"})
    assert "no.such.topic" not in AdminClient({"bootstrap.servers": broker}).list_topics(
        timeout=5).topics, "checking must not auto-create the topic"


def test_start_below_log_start_fails_clearly(spark, broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    topic = new_topic(broker, 1)
    produce(broker, topic, 10, 1)
    admin = AdminClient({"bootstrap.servers": broker})
    for f in admin.delete_records([TopicPartition(topic, 0, 6)]).values():
        f.result()
    opts = {"kafka.bootstrap.servers": broker, "subscribe": topic,
            "startingOffsets": json.dumps({topic: {"0": 0}})}
    with pytest.raises(Exception, match=ErrorCode.KAFKA_DATA_LOSS.value) as info:
        read_stream(spark, tmp_path / "ck", **opts)
    assert "log start is now 6" in str(info.value)


def test_data_loss_skipped_and_recorded_when_allowed(spark, broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    topic = new_topic(broker, 1)
    produce(broker, topic, 10, 1)
    admin = AdminClient({"bootstrap.servers": broker})
    for f in admin.delete_records([TopicPartition(topic, 0, 4)]).values():
        f.result()
    ledger = tmp_path / "loss.jsonl"
    rows = pa.concat_tables(read_stream(
        spark, tmp_path / "ck", **{"kafka.bootstrap.servers": broker, "subscribe": topic,
                                   "startingOffsets": json.dumps({topic: {"0": 0}}),
                                   "failOnDataLoss": "false", "dataLossLog": str(ledger)}))
    assert sorted(rows.column("offset").to_pylist()) == list(range(4, 10))
    [entry] = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert (entry["from"], entry["to"], entry["lost_offsets"]) == (0, 4, 4)


def test_range_ending_in_transaction_markers_does_not_hang(spark, broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    topic = new_topic(broker, 1)
    p = Producer({"bootstrap.servers": broker, "transactional.id": f"tx-{topic}"})
    p.init_transactions(30)
    for batch in range(3):
        p.begin_transaction()
        for i in range(5):
            p.produce(topic, key=b"k", value=f"{batch}-{i}".encode(), partition=0)
        p.commit_transaction(30)
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": broker, "group.id": "probe"})
    _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
    c.close()
    rows = pa.concat_tables(read_stream(
        spark, tmp_path / "ck", **{"kafka.bootstrap.servers": broker, "subscribe": topic}))
    assert rows.num_rows == 15
    assert high >= 15  # markers (if the broker writes them) sit inside the planned range
    assert sorted(v.decode() for v in rows.column("value").to_pylist()) == sorted(
        f"{b}-{i}" for b in range(3) for i in range(5))
