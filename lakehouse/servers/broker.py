"""The embedded Apache Kafka broker for the local default and the tests.

One warehouse, one broker: a single-node Apache Kafka in KRaft mode (broker and
controller in one JVM) run from the jars ``make setup`` fetched (``lakehouse.jvm``), with
its data, settings and log file under the warehouse's ``_broker`` folder, kept by
``lakehouse.servers.supervisor``; ``up`` formats the storage once and answers once a
metadata request does. Nothing here is used when the configuration points at a real
cluster.

With ``users`` (``kafka.embedded.sasl_users``) the client listener wants SASL/PLAIN, and
KRaft's ``StandardAuthorizer`` denies what no ACL allows: ``up`` grants each user of
``topic_acls`` its topics, acting as the admin user (a super user, also the broker's own
identity between its listeners, the controller's included). With ``tls``
(``kafka.embedded.tls``) every listener is TLS, with a certificate from the warehouse's
authority (``lakehouse.io.certificates``) naming the broker's host: SASL_SSL with users;
without, SSL where each client shows a certificate of that authority and its ``CN`` is
its user (``up`` issues one per user of ``topic_acls`` and the admin). The properties file
holding the passwords and the key files are readable by their owner only.
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.certificates import Authority, write_private_properties
from lakehouse.io.kafka_admin import MAX_RECORD_BYTES, admin_client, answers
from lakehouse.io.kafka_security import PLAIN_LOGIN, jaas_quoted, sasl_properties
from lakehouse.io.processes import free_port, last_lines, port_free
from lakehouse.jvm import JarSet, jars, java
from lakehouse.servers import supervisor
from lakehouse.servers.supervisor import ServerStatus

STATE_FILE = "broker.json"
LOG_FILE = "broker.log"
PROPERTIES_FILE = "server.properties"
LOG4J_FILE = "log4j2.properties"
STORAGE_DIR = "kraft"
JVM_OPTIONS = ("-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError",
               "-Djava.awt.headless=true")
"""A laptop-sized heap; the serial collector starts as fast as G1 and spares a core."""

LOG4J = """\
# Kafka logs its own shutdown: keep log4j2's shutdown hook from stopping logging first.
shutdownHook = disable
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
# Every start dumps each configuration and replays the metadata log: keep those out.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


@dataclass(frozen=True)
class _Record:
    """What ``broker.json`` keeps about the warehouse's broker."""

    host: str
    port: int
    controller_port: int
    cluster_id: str
    pid: int | None
    protocol: str = "PLAINTEXT"


class EmbeddedBroker(supervisor.Server[_Record]):
    """Controls the one Kafka process of a data directory (a warehouse's ``_broker``)."""

    def __init__(self, bootstrap: str, data_dir: str, startup_timeout: float = 30.0,
                 users: Mapping[str, str] | None = None, admin_user: str = "admin",
                 topic_acls: Mapping[str, Sequence[str]] | None = None,
                 tls: Authority | None = None) -> None:
        host, _, port = bootstrap.strip().rpartition(":")
        if "," in bootstrap or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise LakehouseError(
                ErrorCode.BROKER_NOT_EMBEDDED,
                f"the embedded broker needs a single host:port, not {bootstrap!r}",
                hint="set kafka.bootstrap_servers to e.g. 127.0.0.1:19092")
        self.host, self.port = host, int(port)
        self.bootstrap = f"{host}:{port}"
        self.data_dir = Path(data_dir).resolve()
        self.startup_timeout = startup_timeout
        self._users = dict(users or {})
        self._admin = admin_user
        self._acls = {user: tuple(topics) for user, topics in (topic_acls or {}).items()}
        self._tls = tls
        self._spec = supervisor.Spec(
            title=f"Apache Kafka at {self.bootstrap}", data_dir=self.data_dir,
            record_type=_Record, record_file=STATE_FILE, log_name=LOG_FILE,
            host=host, ports=(self.port,), address=self.bootstrap, address_of=_address,
            answers=lambda record: _answers(record.host, record.port, self.client_properties),
            failed=ErrorCode.BROKER_START_FAILED, fields={"bootstrap": self.bootstrap},
            startup_timeout=startup_timeout)

    def __repr__(self) -> str:
        return f"EmbeddedBroker({self.bootstrap!r}, {str(self.data_dir)!r})"

    @property
    def protocol(self) -> str:
        """The client listener's security protocol."""
        if self._tls:
            return "SASL_SSL" if self._users else "SSL"
        return "SASL_PLAINTEXT" if self._users else "PLAINTEXT"

    @property
    def client_properties(self) -> dict[str, str]:
        """librdkafka properties to connect as the admin user (none on plaintext without
        SASL)."""
        props = sasl_properties(self._admin, self._users[self._admin]) if self._users else {}
        if self._tls:
            props |= {"security.protocol": self.protocol,
                      "ssl.ca.location": str(self._tls.ca_file)}
            if not self._users:
                cert = str(self._tls.client_file(self._admin))
                props |= {"ssl.certificate.location": cert, "ssl.key.location": cert}
        return props

    def answering(self, timeout: float = 2.0) -> bool:
        """Whether a Kafka broker answers a metadata request at the address."""
        return _answers(self.host, self.port, self.client_properties, timeout)

    def up(self) -> ServerStatus:
        """Start the broker unless it already runs (granting ``topic_acls`` when it starts);
        return once it answers."""
        if supervisor.up(self._spec, self._start, self._moved, self.down):
            self._grant()
        return self.status()

    def _moved(self, record: _Record) -> LakehouseError | None:
        if record.protocol != self.protocol:
            return supervisor.failed(
                self._spec, f"this warehouse's broker runs with {record.protocol} listeners, "
                            f"and the config wants {self.protocol}",
                "restart it to take the config: lakehouse broker down, then lakehouse broker up",
                ErrorCode.BROKER_RECONFIGURED)
        if (record.host, record.port) == (self.host, self.port):
            return None
        return supervisor.failed(
            self._spec, f"this warehouse's broker already runs at {_address(record)}, "
                        f"not at {self.bootstrap}",
            f"stop it first (lakehouse broker down) or use --port {record.port}",
            ErrorCode.BROKER_RUNNING_ELSEWHERE)

    def _start(self, record: _Record | None) -> _Record:
        """Refuse a port held by another process; format the storage once and launch
        ``kafka.Kafka``."""
        if not port_free(self.host, self.port):
            other = ("a Kafka broker this warehouse did not start"
                     if self.answering(timeout=1.0) else "another process")
            raise supervisor.failed(
                self._spec, f"port {self.port} is held by {other}; the broker of "
                            f"{self.data_dir} cannot listen at {self.bootstrap}",
                "stop the other broker (`lakehouse broker down` with its config) or start "
                "this one on another port: lakehouse broker up --port N",
                ErrorCode.BROKER_PORT_TAKEN)
        classpath = os.pathsep.join(str(jar) for jar in jars(JarSet.BROKER))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        record = self._prepare(record)
        if not (self.data_dir / STORAGE_DIR / "meta.properties").exists():
            self._format(classpath, record.cluster_id)
        proc = self._java(classpath, "kafka.Kafka", str(self.data_dir / PROPERTIES_FILE))
        return replace(record, pid=proc.pid)

    def _grant(self) -> None:
        """Each user of ``topic_acls``: create, describe, read and write its topics, read
        with any consumer group (creating an ACL that exists changes nothing)."""
        if not self._acls:
            return
        bindings = [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                               f"User:{user}", "*", operation, AclPermissionType.ALLOW)
                    for user, topics in self._acls.items() for topic in topics
                    for operation in (AclOperation.CREATE, AclOperation.DESCRIBE,
                                      AclOperation.READ, AclOperation.WRITE)]
        bindings += [AclBinding(ResourceType.GROUP, "*", ResourcePatternType.LITERAL,
                                f"User:{user}", "*", AclOperation.READ, AclPermissionType.ALLOW)
                     for user in self._acls]
        admin = admin_client(self.bootstrap, self.client_properties)
        for binding, future in admin.create_acls(bindings, request_timeout=30).items():
            try:
                future.result()
            except KafkaException as exc:
                raise supervisor.failed(
                    self._spec, f"granting {binding.principal} {binding.operation} on "
                                f"{binding.name} failed: {exc}", f"see {self.log_file}") from exc

    def _prepare(self, record: _Record | None) -> _Record:
        """The ports and cluster id of this start, with its properties and log4j files."""
        cluster_id = _formatted_cluster_id(self.data_dir / STORAGE_DIR) or (
            record.cluster_id if record else _new_cluster_id())
        controller_port = record.controller_port if record else self.port + 1
        if controller_port == self.port or not port_free(self.host, controller_port):
            controller_port = self.port + 1
            if not port_free(self.host, controller_port):
                controller_port = free_port(self.host)
        host, port = self.host, self.port
        client = self.protocol
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
            "listeners": f"{client}://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"{client}://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": client,
            "listener.security.protocol.map": f"CONTROLLER:{client},{client}:{client}",
            "log.dirs": str(self.data_dir / STORAGE_DIR),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            "log.retention.hours": "-1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "6",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": str(MAX_RECORD_BYTES),
            **self._security_properties(),
        }
        write_private_properties(self.data_dir / PROPERTIES_FILE, properties)
        (self.data_dir / LOG4J_FILE).write_text(LOG4J.format(log=self.log_file))
        return _Record(host, port, controller_port, cluster_id, None, client)

    def _security_properties(self) -> dict[str, str]:
        """The users (SASL/PLAIN, on the controller listener too: no one reaches the
        controller unauthenticated), the TLS key and trust stores and client
        certificates, and the authorizer (none of it on plaintext without users)."""
        props: dict[str, str] = {}
        if self._users:
            login = (f"{PLAIN_LOGIN} required username={jaas_quoted(self._admin)} "
                     f"password={jaas_quoted(self._users[self._admin])}")
            accounts = " ".join(f"user_{user}={jaas_quoted(password)}"
                                for user, password in self._users.items())
            props |= {
                "sasl.enabled.mechanisms": "PLAIN",
                "sasl.mechanism.inter.broker.protocol": "PLAIN",
                "sasl.mechanism.controller.protocol": "PLAIN",
                f"listener.name.{self.protocol.lower()}.plain.sasl.jaas.config":
                    f"{login} {accounts};",
                "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
                "listener.name.controller.plain.sasl.jaas.config": f"{login} {accounts};",
            }
        if self._tls:
            keystore = self._tls.server("broker", [self.host])
            props |= {"ssl.keystore.type": "PEM", "ssl.keystore.location": str(keystore),
                      "ssl.truststore.type": "PEM",
                      "ssl.truststore.location": str(self._tls.ca_file),
                      # A certificate's CN is its user: User:etl, as with SASL.
                      "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT"}
            if not self._users:
                props["ssl.client.auth"] = "required"
                for user in {self._admin, *self._acls}:
                    self._tls.client(user)
        if self._users or self._tls:
            # The broker itself: the admin user by SASL, or its certificate (CN=broker).
            itself = "" if self._users else ";User:broker"
            props |= {
                "authorizer.class.name":
                    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "super.users": f"User:{self._admin}{itself}",
                "allow.everyone.if.no.acl.found": "false",
            }
        return props

    def _format(self, classpath: str, cluster_id: str) -> None:
        """Format the empty storage as a standalone KRaft quorum (once per warehouse)."""
        proc = self._java(classpath, "kafka.tools.StorageTool", "format", "--standalone",
                          "-t", cluster_id, "-c", str(self.data_dir / PROPERTIES_FILE))
        try:
            failed = proc.wait(timeout=self.startup_timeout) != 0
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            failed = True
        if failed:
            raise supervisor.failed(
                self._spec, f"formatting the Kafka storage in {self.data_dir / STORAGE_DIR} "
                            "failed", last_lines(self.log_file))

    def _java(self, classpath: str, main: str, *args: str) -> subprocess.Popen[bytes]:
        """A detached JVM running ``main`` in the data directory."""
        command = [str(java()), *JVM_OPTIONS,
                   f"-Dlog4j2.configurationFile={self.data_dir / LOG4J_FILE}",
                   "-cp", classpath, main, *args]
        return supervisor.spawn(self._spec, command, "install a JDK 17 or set JAVA_HOME")


def _address(record: _Record) -> str:
    return f"{record.host}:{record.port}"


def _answers(host: str, port: int, properties: Mapping[str, str], timeout: float = 2.0) -> bool:
    """Whether a Kafka broker answers a metadata request at host:port (at once False
    while nothing listens there)."""
    return not port_free(host, port) and answers(f"{host}:{port}", properties, timeout=timeout)


def _formatted_cluster_id(storage: Path) -> str | None:
    """The cluster id the storage was formatted with, None if it is not formatted."""
    try:
        lines = (storage / "meta.properties").read_text().splitlines()
    except FileNotFoundError:
        return None
    return next((line.partition("=")[2].strip() for line in lines
                 if line.startswith("cluster.id=")), "")


def _new_cluster_id() -> str:
    """A random cluster id as Kafka writes them (URL-safe base64 of a UUID, no '-' first)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text
