"""Kafka metadata and topic management over the plain Kafka protocol (confluent-kafka).

Nothing here is broker-specific: the same calls work on the embedded broker and on any
Kafka cluster given its bootstrap servers.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.certificates import common_name
from lakehouse.io.tls import Trust, refusal

log = logging.getLogger(__name__)
C = TypeVar("C")

METADATA_TIMEOUT_S = 10.0
MAX_RECORD_BYTES = 16 * 1024 * 1024
"""The largest record ``lakehouse produce`` sends and the embedded broker accepts (Kafka's
own default is 1 MB): records of several MB reach bronze untouched, and silver quarantines
what is over the contract's ``max_record_bytes``."""


_REFUSED: dict[str, KafkaError] = {}
"""Bootstrap servers -> the last refusal (credentials, a TLS handshake) a client of this
process met there. librdkafka reports it only to the error callback, and keeps retrying;
the call that failed says 'transport failure' once its time is up."""
_TLS = ("SSL", "SASL_SSL")


def _remember_refusals(bootstrap_servers: str) -> Callable[[KafkaError], None]:
    def on_error(err: KafkaError) -> None:
        if err.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL) or (
                err.code() == KafkaError._TRANSPORT and "certificate" in err.str()):
            _REFUSED[bootstrap_servers] = err
    return on_error


def tls_error(bootstrap_servers: str, properties: Mapping[str, str] | None
              ) -> LakehouseError | None:
    """Why the TLS handshake with a bootstrap server fails, if it does, or that a plaintext
    client reached a TLS listener (None when neither is so)."""
    properties = properties or {}
    protocol = properties.get("security.protocol", "PLAINTEXT").upper()
    trust = Trust.of(properties) if protocol in _TLS else None
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        error = refusal(host.strip("[]"), int(port), trust, "the Kafka broker",
                        "kafka.client_properties",
                        f"set security.protocol: SASL_SSL (with SASL) or SSL under "
                        f"kafka.client_properties (it is {protocol})")
        if error is not None:
            return error
    return None


def principal(properties: Mapping[str, str] | None) -> str:
    """The user a client of ``properties`` is to the broker: its SASL user name, else its
    certificate's CN (as the embedded broker maps it), else ANONYMOUS."""
    props = properties or {}
    if "sasl.username" in props:
        return props["sasl.username"]
    if "ssl.certificate.location" in props:
        try:
            return common_name(props["ssl.certificate.location"])
        except (OSError, ValueError):
            return f"the holder of {props['ssl.certificate.location']}"
    return "ANONYMOUS"


def client_config(bootstrap_servers: str, properties: Mapping[str, str] | None = None) -> dict:
    """librdkafka settings shared by every client the project makes."""
    conf: dict = {"bootstrap.servers": bootstrap_servers, "log_level": 3,
                  "error_cb": _remember_refusals(bootstrap_servers)}
    conf.update(properties or {})
    return conf


def made(factory: Callable[[dict], C], conf: dict) -> C:
    """``factory(conf)``: a librdkafka client, or LH-KAFKA-005 naming the setting it
    refused (an unknown name, such as a Java client's, or a key or certificate file it
    cannot load)."""
    try:
        return factory(conf)
    except KafkaException as exc:
        raise LakehouseError(
            ErrorCode.KAFKA_BAD_OPTION,
            f"the Kafka client refused its settings: {exc.args[0].str()}",
            hint="kafka.client_properties take librdkafka's names (a Java client's "
                 "ssl.truststore.location is ssl.ca.location there, a PEM file); each ssl.* "
                 "file must exist, be readable, and hold what its name says") from None


def admin_client(bootstrap_servers: str, properties: Mapping[str, str] | None = None) -> AdminClient:
    """An AdminClient for these servers."""
    return made(AdminClient, client_config(bootstrap_servers, properties))


def metadata_consumer(bootstrap_servers: str, properties: Mapping[str, str] | None = None) -> Consumer:
    """A consumer used only for metadata and watermarks; it never joins a group."""
    return made(Consumer, {**client_config(bootstrap_servers, properties),
                           "group.id": f"lakehouse-metadata-{uuid.uuid4().hex[:8]}",
                           "enable.auto.commit": False, "enable.auto.offset.store": False})


def answers(bootstrap_servers: str, properties: Mapping[str, str] | None = None,
            timeout: float = 2.0) -> bool:
    """Whether a Kafka broker answers a metadata request within ``timeout`` seconds."""
    conf = {**client_config(bootstrap_servers, properties), "log_level": 0,
            "socket.connection.setup.timeout.ms": 1000}
    try:
        made(AdminClient, conf).list_topics(timeout=timeout)
        return True
    except KafkaException:
        return False


def list_topics(admin: AdminClient | Consumer, bootstrap_servers: str,
                properties: Mapping[str, str] | None = None,
                timeout: float = METADATA_TIMEOUT_S) -> dict[str, int]:
    """All topics and their partition counts; a clear error if no broker answers.

    Asks for the full topic list on purpose: asking for one topic by name makes brokers
    with auto-creation enabled create it. ``properties``: the client's, to tell a TLS
    failure's cause (an untrusted, expired or misnamed certificate, a refused client
    certificate) with its own code.
    """
    # Asked in slices growing from 1 s (a slow broker still answers the longer ones): a
    # refusal (credentials, a certificate) ends the wait at once.
    deadline = time.monotonic() + timeout
    slice_s = 1.0
    _REFUSED.pop(bootstrap_servers, None)
    while True:
        try:
            md = admin.list_topics(timeout=min(slice_s, max(deadline - time.monotonic(), 0.1)))
            break
        except KafkaException as exc:
            admin.poll(0)  # serves the error callback
            if bootstrap_servers not in _REFUSED and time.monotonic() < deadline:
                slice_s *= 2
                continue
            raise _unanswered(bootstrap_servers, properties, timeout, exc) from exc
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def _unanswered(bootstrap_servers: str, properties: Mapping[str, str] | None, timeout: float,
                exc: KafkaException) -> LakehouseError:
    """Why no metadata came: a TLS handshake's cause, refused credentials, or no broker."""
    if (refused := tls_error(bootstrap_servers, properties)) is not None:
        return refused
    reason = _REFUSED.pop(bootstrap_servers, None)
    if reason is not None and reason.code() == KafkaError._AUTHENTICATION:
        return LakehouseError(
            ErrorCode.KAFKA_NOT_AUTHENTICATED,
            f"the Kafka cluster at {bootstrap_servers} refused this client's "
            f"credentials: {reason.str()}",
            hint="check sasl.username and sasl.password (or the environment variable it "
                 "names) and sasl.mechanism under kafka.client_properties",
            bootstrap=bootstrap_servers)
    return LakehouseError(
        ErrorCode.BROKER_UNREACHABLE,
        f"no Kafka broker answered at {bootstrap_servers} within {timeout:.0f}s "
        f"({reason.str() if reason is not None else exc})",
        hint="start the embedded one with `lakehouse broker up`, or set "
             "LAKEHOUSE_KAFKA_BOOTSTRAP to a reachable cluster",
        bootstrap=bootstrap_servers)


def topic_partitions(admin: AdminClient | Consumer, bootstrap_servers: str, topic: str,
                     properties: Mapping[str, str] | None = None) -> list[int]:
    """The partition ids of an existing topic, or TOPIC_NOT_FOUND."""
    topics = list_topics(admin, bootstrap_servers, properties)
    if topic not in topics:
        known = ", ".join(sorted(t for t in topics if not t.startswith("__"))) or "none"
        raise LakehouseError(
            ErrorCode.TOPIC_NOT_FOUND,
            f"topic {topic!r} does not exist on {bootstrap_servers} (topics there: {known})",
            hint="create it with `lakehouse topics create` (or `lakehouse produce`), "
                 "or fix the topic name in the config",
            topic=topic, bootstrap=bootstrap_servers)
    return list(range(topics[topic]))


@dataclass(frozen=True)
class TopicSpec:
    """A topic the project needs."""

    name: str
    partitions: int
    replication_factor: int = 1


def ensure_topics(bootstrap_servers: str, specs: Iterable[TopicSpec],
                  properties: Mapping[str, str] | None = None) -> list[str]:
    """Create missing topics; grow existing ones to the configured partition count.

    Returns the names of the topics it created. Never shrinks or deletes anything.
    """
    admin = admin_client(bootstrap_servers, properties)
    existing = list_topics(admin, bootstrap_servers, properties)
    specs = list(specs)
    created: list[str] = []
    to_create = [NewTopic(s.name, s.partitions, s.replication_factor)
                 for s in specs if s.name not in existing]
    if to_create:
        for name, future in admin.create_topics(to_create, operation_timeout=30).items():
            try:
                future.result()
                created.append(name)
                log.info("created topic %s", name)
            except KafkaException as exc:
                code = exc.args[0].code()
                if code in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                            KafkaError.CLUSTER_AUTHORIZATION_FAILED):
                    user = principal(properties)
                    raise LakehouseError(
                        ErrorCode.KAFKA_NOT_AUTHORIZED,
                        f"Kafka user {user} may not see or create topic {name!r} on "
                        f"{bootstrap_servers} (no ACL allows it)",
                        hint=f"grant User:{user} DESCRIBE, READ and WRITE on the topic (CREATE "
                             "too, if it is to be created); for the embedded broker: "
                             "kafka.embedded.topic_acls", topic=name, user=user,
                        bootstrap=bootstrap_servers) from exc
                if code != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    to_grow = [NewPartitions(s.name, s.partitions) for s in specs
               if s.name in existing and existing[s.name] < s.partitions]
    if to_grow:
        for name, future in admin.create_partitions(to_grow, operation_timeout=30).items():
            future.result()
            log.info("grew topic %s to its configured partition count", name)
    return created


def watermarks(consumer: Consumer, topic: str, partitions: Iterable[int],
               timeout: float = METADATA_TIMEOUT_S) -> dict[int, tuple[int, int]]:
    """(log start offset, high watermark) for each partition."""
    marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
             for p in partitions}
    return {p: (int(low), int(high)) for p, (low, high) in marks.items()}


def offsets_at(bootstrap_servers: str, properties: Mapping[str, str] | None, topic: str,
               at_ms: int | None) -> tuple[dict[int, tuple[int, int]], dict[int, int]]:
    """Per partition of ``topic``: its (log start offset, high watermark), and, given
    ``at_ms``, the offset of its first record at or after that instant (the high
    watermark where there is none)."""
    consumer = metadata_consumer(bootstrap_servers, properties)
    try:
        partitions = topic_partitions(consumer, bootstrap_servers, topic, properties)
        marks = watermarks(consumer, topic, partitions)
        if at_ms is None:
            return marks, {}
        found = consumer.offsets_for_times([TopicPartition(topic, p, at_ms) for p in partitions],
                                           timeout=30)
        return marks, {tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][1]
                       for tp in found}
    finally:
        consumer.close()
