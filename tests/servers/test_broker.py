"""The embedded Apache Kafka broker: real KRaft processes on free ports, each warehouse
with its own data directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.kafka_admin import admin_client
from lakehouse.jvm import JarSet, jars, java
from lakehouse.servers.broker import EmbeddedBroker
from tests.conftest import free_port

pytestmark = pytest.mark.integration


def produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value)
    assert producer.flush(15) == 0


def read_all(bootstrap: str, topic: str) -> list[bytes]:
    """Every value of the topic's one partition, without joining a group."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values: list[bytes] = []
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None and values:
                break
            if message is not None and not message.error():
                values.append(message.value())
    finally:
        consumer.close()
    return values


def test_lifecycle_of_a_warehouse_broker(tmp_path: Path) -> None:
    broker = EmbeddedBroker(f"127.0.0.1:{free_port()}", str(tmp_path / "a" / "_broker"))
    started = broker.up()
    try:
        assert started.running and started.answering and broker.answering()
        produce(broker.bootstrap, "t.lifecycle", b"first")
        assert read_all(broker.bootstrap, "t.lifecycle") == [b"first"]
        assert broker.up().pid == started.pid, "up twice is the same broker"
        assert broker.status() == started

        # Another warehouse's broker on the same port is refused, not shared.
        other = EmbeddedBroker(broker.bootstrap, str(tmp_path / "b" / "_broker"))
        with pytest.raises(LakehouseError) as taken:
            other.up()
        assert taken.value.code is ErrorCode.BROKER_PORT_TAKEN
        assert other.status().port_taken and not other.status().answering
        # The same warehouse asked for another port while its broker runs.
        moved = EmbeddedBroker(f"127.0.0.1:{free_port()}", str(broker.data_dir))
        with pytest.raises(LakehouseError) as elsewhere:
            moved.up()
        assert elsewhere.value.code is ErrorCode.BROKER_RUNNING_ELSEWHERE
    finally:
        assert broker.down()
    assert not broker.answering() and not broker.status().running
    assert not broker.down(), "nothing left to stop"

    # A restart reuses the formatted storage: same cluster, the topic's data kept.
    restarted = broker.up()
    try:
        assert restarted.pid != started.pid
        assert read_all(broker.bootstrap, "t.lifecycle") == [b"first"]
    finally:
        broker.down()


def test_port_held_by_another_process_is_refused(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        broker = EmbeddedBroker(f"127.0.0.1:{port}", str(tmp_path / "_broker"))
        with pytest.raises(LakehouseError) as taken:
            broker.up()
    assert taken.value.code is ErrorCode.BROKER_PORT_TAKEN
    assert "another process" in taken.value.message


def test_startup_failure_shows_the_broker_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "_broker"
    (data_dir / "kraft").mkdir(parents=True)
    (data_dir / "kraft" / "meta.properties").write_text("garbage\n")  # formatted, broken
    broker = EmbeddedBroker(f"127.0.0.1:{free_port()}", str(data_dir), startup_timeout=20)
    with pytest.raises(LakehouseError) as failed:
        broker.up()
    assert failed.value.code is ErrorCode.BROKER_START_FAILED
    assert "exited" in failed.value.message
    assert "Exiting Kafka" in failed.value.hint and str(broker.log_file) in failed.value.hint
    assert not broker.status().running


def test_missing_jars_are_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_JARS", str(tmp_path / "no-jars"))
    broker = EmbeddedBroker(f"127.0.0.1:{free_port()}", str(tmp_path / "_broker"))
    with pytest.raises(LakehouseError) as missing:
        broker.up()
    assert missing.value.code is ErrorCode.JARS_MISSING


def test_the_controller_listener_takes_no_one_unauthenticated(tmp_path: Path) -> None:
    """With users, no local process reaches the KRaft controller without credentials: an
    Admin creating an ACL through it (KIP-919) is refused, and no ACL appears; on a broker
    without users (which takes anyone anyway) the same probe reaches it."""
    open_broker = EmbeddedBroker(f"127.0.0.1:{free_port()}", str(tmp_path / "open"))
    secured = EmbeddedBroker(f"127.0.0.1:{free_port()}", str(tmp_path / "secured"),
                             users={"admin": "adm-1c9e", "etl": "etl-77d2"},
                             topic_acls={"etl": ["t"]})
    try:
        for broker in (open_broker, secured):
            broker.up()
        assert _controller_acl(tmp_path / "open").startswith("reached ")
        refused = _controller_acl(tmp_path / "secured")
        assert refused.startswith("refused") and "reached" not in refused, refused
        every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                 AclOperation.ANY, AclPermissionType.ANY)
        admin = admin_client(secured.bootstrap, secured.client_properties)
        acls = admin.describe_acls(every, request_timeout=30).result()
        principals = {acl.principal for acl in acls}
        assert principals == {"User:etl"}, principals  # what `up` granted, nothing else
    finally:
        for broker in (open_broker, secured):
            broker.down()


def _controller_acl(data_dir: Path) -> str:
    """What Kafka's own Admin says, creating an ACL through the controller listener of the
    broker of ``data_dir`` without credentials (tests/servers/java/ControllerAcl.java)."""
    controller = json.loads((data_dir / "broker.json").read_text())["controller_port"]
    probe = subprocess.run(
        [str(java()), "-cp", os.pathsep.join(map(str, jars(JarSet.BROKER))),
         str(Path(__file__).parent / "java" / "ControllerAcl.java"), f"127.0.0.1:{controller}"],
        capture_output=True, text=True, timeout=120)
    assert probe.stdout, probe.stderr[-2000:]
    return probe.stdout.strip()
