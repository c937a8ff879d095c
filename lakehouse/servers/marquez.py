"""A local Marquez, the OpenLineage reference server, to browse the lakehouse's lineage.

Marquez is not on this machine's Maven Central, so it is never fetched: ``home`` (or
``MARQUEZ_HOME``) points at a Marquez API distribution, the ``marquez-api`` jar with its
runtime jars in ``lib/``. One data directory, one server: a PostgreSQL cluster of its own
under ``pg/`` (initialised once; run as the ``postgres`` OS user when we are root, since
PostgreSQL refuses to run as root), with a ``marquez`` role owning a ``marquez`` database,
and the Marquez JVM, its ``marquez.yml`` and log next to it, kept by
``lakehouse.servers.supervisor`` (up once the admin healthcheck passes; PostgreSQL stopped
after it). Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import urllib.error
import urllib.parse
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.processes import port_free
from lakehouse.servers import supervisor
from lakehouse.servers.postgres import Postgres, postgres_bindir
from lakehouse.servers.supervisor import ServerStatus

HOME_ENV = "MARQUEZ_HOME"
STATE_FILE = "marquez.json"
CONFIG_FILE = "marquez.yml"
LOG_FILE = "marquez.log"
PG_DIR = "pg"
HOST = "127.0.0.1"
DB_NAME = DB_USER = DB_PASSWORD = "marquez"
JVM_OPTIONS = ("-Xms256m", "-Xmx768m", "-XX:+UseSerialGC")
"""A laptop-sized heap; the serial collector starts as fast as G1 and spares a core."""

NOT_INSTALLED_HINT = (
    "Marquez is not served by this machine's Maven Central, so the project cannot fetch it. "
    f"Point {HOME_ENV} at a Marquez API distribution: a directory holding the marquez-api "
    "jar plus its runtime jars in lib/. Build it on a machine that has internet from "
    "https://github.com/MarquezProject/marquez with its own Gradle build: `./gradlew "
    ":api:shadowJar` makes a self-contained api/build/libs/marquez-api-<version>.jar (then "
    "lib/ may stay empty); copy the result here and set MARQUEZ_HOME to its folder")

CONFIG = """\
# Written by lakehouse.servers.marquez on every start; edits are overwritten.
server:
  applicationConnectors:
    - type: http
      bindHost: {host}
      port: {port}
      httpCompliance: RFC7230_LEGACY
  adminConnectors:
    - type: http
      bindHost: {host}
      port: {admin_port}
  requestLog:
    appenders: []

db:
  driverClass: org.postgresql.Driver
  url: jdbc:postgresql://{host}:{pg_port}/{db}
  user: {user}
  password: {password}

migrateOnStartup: true

search:
  enabled: false

logging:
  level: INFO
  appenders:
    - type: file
      currentLogFilename: {log}
      archive: false
"""


class MarquezRequestError(Exception):
    """Marquez answered a read with an HTTP error (the message carries its body)."""


@dataclass(frozen=True, kw_only=True)
class MarquezStatus(ServerStatus):
    """What ``lakehouse lineage`` reports about the local Marquez: its server's status
    (``port_taken``: its application or admin port) with its PostgreSQL and admin URL."""

    postgres_pid: int | None
    admin_url: str

    @property
    def healthy(self) -> bool:
        """Whether its admin healthcheck passes."""
        return self.answering

    def describe(self) -> str:
        """One line for humans."""
        postgres = (f"PostgreSQL pid {self.postgres_pid}" if self.postgres_pid
                    else "PostgreSQL not running")
        if self.running and self.healthy:
            return (f"running (pid {self.pid}) at {self.address}, admin {self.admin_url}, "
                    f"{postgres}, data in {self.data_dir}")
        if self.running:
            return f"started (pid {self.pid}) but not healthy at {self.admin_url} yet; {postgres}"
        if self.port_taken:
            return f"not running; {self.address} or {self.admin_url} is held by another process"
        return f"not running (would serve {self.address}; {postgres}, data in {self.data_dir})"


@dataclass(frozen=True)
class _Record:
    """What ``marquez.json`` keeps about the data directory's server."""

    port: int
    admin_port: int
    pg_port: int
    pid: int | None
    postgres_pid: int | None


class Marquez(supervisor.Server[_Record]):
    """Controls the Marquez server and its PostgreSQL of one data directory."""

    def __init__(self, home: Path | str | None, data_dir: Path | str, port: int = 5000,
                 admin_port: int = 5001, pg_port: int = 55432,
                 startup_timeout: float = 120.0) -> None:
        home = home or os.environ.get(HOME_ENV) or None
        self.home = Path(home).expanduser().resolve() if home else None
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port, self.admin_port, self.pg_port = port, admin_port, pg_port
        self._postgres = Postgres(self.data_dir / PG_DIR, HOST)
        self._spec = supervisor.Spec(
            title=f"Marquez at {self.url}", data_dir=self.data_dir, record_type=_Record,
            record_file=STATE_FILE, log_name=LOG_FILE, host=HOST, ports=(port, admin_port),
            address=self.url, address_of=lambda record: f"http://{HOST}:{record.port}",
            answers=lambda record: _healthy(_admin_url(record)),
            failed=ErrorCode.MARQUEZ_START_FAILED, fields={"url": self.url},
            startup_timeout=startup_timeout, interval=0.5, not_ready="was not healthy")

    @property
    def url(self) -> str:
        """Where the API and web endpoints answer (``<url>/api/v1/...``)."""
        return f"http://{HOST}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"

    def status(self) -> MarquezStatus:
        """Is this data directory's Marquez running, and does its healthcheck pass?"""
        server = supervisor.status(self._spec)
        record = supervisor.read(self._spec) if server.running else None
        return MarquezStatus(**asdict(server), postgres_pid=self._postgres.pid(),
                             admin_url=_admin_url(record) if record else self.admin_url)

    def up(self) -> MarquezStatus:
        """Start PostgreSQL and Marquez unless they run; return once Marquez is healthy."""
        if len({self.port, self.admin_port, self.pg_port}) < 3:
            raise supervisor.failed(
                self._spec, f"the ports must differ: application {self.port}, admin "
                            f"{self.admin_port}, PostgreSQL {self.pg_port}",
                "choose three different ports")
        supervisor.up(self._spec, self._start, self._moved, self.down)
        return self.status()

    def down(self, grace: float = 20.0) -> bool:
        """Stop Marquez gracefully, then PostgreSQL; True if either was running."""
        stopped = supervisor.down(self._spec, grace, postgres_pid=None)
        return self._postgres.down() or stopped

    def _moved(self, record: _Record) -> LakehouseError | None:
        if (record.port, record.admin_port) == (self.port, self.admin_port):
            return None
        return supervisor.failed(
            self._spec, f"this data directory's Marquez already runs on ports {record.port}/"
                        f"{record.admin_port}, not {self.port}/{self.admin_port}",
            f"stop it first (down) or use port {record.port} and admin port "
            f"{record.admin_port}")

    def _start(self, record: _Record | None) -> _Record:
        """PostgreSQL with the ``marquez`` database, then the Marquez JVM; refused if
        Marquez is not installed or another process holds a port."""
        jar, lib = self._installation()
        java = _java()
        bindir = postgres_bindir(self._postgres.cluster_version())
        for name, port in (("application", self.port), ("admin", self.admin_port)):
            if not port_free(HOST, port):
                raise supervisor.failed(
                    self._spec, f"Marquez's {name} port {port} on {HOST} is held by another "
                                "process",
                    "stop that process (another Marquez? `docker ps`, `ss -ltnp`) or choose "
                    "other ports (port=..., admin_port=...)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        postgres_pid = self._postgres.up(bindir, self.pg_port)
        self._postgres.ensure_database(bindir, DB_NAME, DB_USER, DB_PASSWORD)
        (self.data_dir / CONFIG_FILE).write_text(CONFIG.format(
            host=HOST, port=self.port, admin_port=self.admin_port, pg_port=self.pg_port,
            db=DB_NAME, user=DB_USER, password=DB_PASSWORD,
            log=json.dumps(str(self.log_file))))
        classpath = os.pathsep.join([str(jar), str(lib / "*")])
        proc = supervisor.spawn(self._spec, [java, *JVM_OPTIONS, "-cp", classpath,
                                             "marquez.MarquezApp", "server",
                                             str(self.data_dir / CONFIG_FILE)],
                                "install a JDK 17 or set JAVA_HOME")
        return _Record(self.port, self.admin_port, self.pg_port, proc.pid, postgres_pid)

    def get(self, path: str, **params: Any) -> Any:
        """The JSON answer of ``GET <url>/api/v1/<path>?<params>``."""
        url = f"{self.url}/api/v1/{path.lstrip('/')}"
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        try:
            with supervisor.LOCAL.open(url, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise MarquezRequestError(f"GET {url}: HTTP {exc.code}: {body[:2000]}") from exc

    def _installation(self) -> tuple[Path, Path]:
        """The marquez-api jar and the lib/ folder of its runtime jars (may be empty when the
        jar is Gradle's self-contained ``shadowJar``)."""
        if self.home is None:
            raise LakehouseError(ErrorCode.MARQUEZ_NOT_INSTALLED,
                                 f"no Marquez home: pass one or set {HOME_ENV}",
                                 hint=NOT_INSTALLED_HINT)
        jars = sorted(jar for jar in self.home.glob("marquez-api-*.jar")
                      if not jar.name.endswith(("-sources.jar", "-javadoc.jar")))
        lib = self.home / "lib"
        missing = ("no marquez-api-*.jar" if not jars
                   else "" if any(lib.glob("*.jar")) or _self_contained(jars[-1])
                   else "no runtime jars in lib/ (and the jar is not a self-contained one)")
        if missing:
            raise LakehouseError(ErrorCode.MARQUEZ_NOT_INSTALLED,
                                 f"{self.home} is not a Marquez API distribution: {missing}",
                                 hint=NOT_INSTALLED_HINT, home=str(self.home))
        return jars[-1], lib


def _self_contained(jar: Path) -> bool:
    """Whether the jar bundles its dependencies (Dropwizard among them)."""
    try:
        with zipfile.ZipFile(jar) as archive:
            archive.getinfo("io/dropwizard/Application.class")
            return True
    except (OSError, KeyError, zipfile.BadZipFile):
        return False


def _java() -> str:
    java = (Path(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME")
            else shutil.which("java"))
    if java is None or not Path(java).is_file():
        raise LakehouseError(ErrorCode.MARQUEZ_START_FAILED, f"no Java at {java or 'PATH'}",
                             hint="install a JDK 17 or set JAVA_HOME")
    return str(java)


def _admin_url(record: _Record) -> str:
    return f"http://{HOST}:{record.admin_port}"


def _healthy(admin_url: str) -> bool:
    """Whether Marquez's admin healthcheck (its database included) passes."""
    try:
        with supervisor.LOCAL.open(f"{admin_url}/healthcheck", timeout=2) as response:
            return int(response.status) == 200
    except (OSError, ValueError, http.client.HTTPException):
        return False
