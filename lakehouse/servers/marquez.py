"""A local Marquez, the OpenLineage reference server, to browse the lakehouse's lineage.

Marquez is not on this machine's Maven Central, so it is never fetched: ``home`` (or
``MARQUEZ_HOME``) points at a Marquez API distribution, the ``marquez-api`` jar with its
runtime jars in ``lib/``. One data directory, one server: a PostgreSQL cluster of its own
under ``pg/`` (initialised once; run as the ``postgres`` OS user when we are root, since
PostgreSQL refuses to run as root), with a ``marquez`` role owning a ``marquez`` database,
and the Marquez JVM, its ``marquez.yml`` and log next to it. ``up`` starts what is not
running, records pids and ports in ``marquez.json`` and returns once the admin
healthcheck passes; it refuses a port held by anything else. ``down`` stops Marquez
gracefully (SIGTERM, then SIGKILL after a grace period), then PostgreSQL. ``up`` twice is
fine. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.processes import (
    log_tail,
    port_free,
    read_state,
    running_java,
    stop_java,
    write_state,
)

HOME_ENV = "MARQUEZ_HOME"
STATE_FILE = "marquez.json"
CONFIG_FILE = "marquez.yml"
LOG_FILE = "marquez.log"
PG_DIR = "pg"
HOST = "127.0.0.1"
DB_NAME = DB_USER = DB_PASSWORD = "marquez"
PG_OS_USER = "postgres"
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


@dataclass(frozen=True)
class MarquezStatus:
    """What ``lakehouse lineage`` reports about the local Marquez."""

    running: bool
    healthy: bool
    pid: int | None
    postgres_pid: int | None
    url: str
    admin_url: str
    data_dir: str
    port_taken: bool = False
    """Not running, and something else holds its application or admin port."""

    def describe(self) -> str:
        """One line for humans."""
        postgres = (f"PostgreSQL pid {self.postgres_pid}" if self.postgres_pid
                    else "PostgreSQL not running")
        if self.running and self.healthy:
            return (f"running (pid {self.pid}) at {self.url}, admin {self.admin_url}, "
                    f"{postgres}, data in {self.data_dir}")
        if self.running:
            return f"started (pid {self.pid}) but not healthy at {self.admin_url} yet; {postgres}"
        if self.port_taken:
            return f"not running; {self.url} or {self.admin_url} is held by another process"
        return f"not running (would serve {self.url}; {postgres}, data in {self.data_dir})"


@dataclass(frozen=True)
class _Record:
    """What ``marquez.json`` keeps about the data directory's server."""

    port: int
    admin_port: int
    pg_port: int
    pid: int | None
    postgres_pid: int | None


class Marquez:
    """Controls the Marquez server and its PostgreSQL of one data directory."""

    def __init__(self, home: Path | str | None, data_dir: Path | str, port: int = 5000,
                 admin_port: int = 5001, pg_port: int = 55432,
                 startup_timeout: float = 120.0) -> None:
        home = home or os.environ.get(HOME_ENV) or None
        self.home = Path(home).expanduser().resolve() if home else None
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port, self.admin_port, self.pg_port = port, admin_port, pg_port
        self.startup_timeout = startup_timeout
        self._postgres = _Postgres(self.data_dir / PG_DIR)

    @property
    def url(self) -> str:
        """Where the API and web endpoints answer (``<url>/api/v1/...``)."""
        return f"http://{HOST}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"

    @property
    def log_file(self) -> Path:
        """Marquez's log (Dropwizard's lines and anything the JVM prints)."""
        return self.data_dir / LOG_FILE

    def status(self) -> MarquezStatus:
        """Is this data directory's Marquez running, and does its healthcheck pass?"""
        record = self._record()
        pid = self._running_pid(record)
        postgres_pid = self._postgres.pid()
        if record is not None and pid is not None:
            admin = f"http://{HOST}:{record.admin_port}"
            return MarquezStatus(True, _healthy(admin), pid, postgres_pid,
                                 f"http://{HOST}:{record.port}", admin, str(self.data_dir))
        taken = not (port_free(HOST, self.port) and port_free(HOST, self.admin_port))
        return MarquezStatus(False, False, None, postgres_pid, self.url, self.admin_url,
                             str(self.data_dir), port_taken=taken)

    def up(self) -> MarquezStatus:
        """Start PostgreSQL and Marquez unless they run; return once Marquez is healthy."""
        if len({self.port, self.admin_port, self.pg_port}) < 3:
            raise self._failed(f"the ports must differ: application {self.port}, admin "
                               f"{self.admin_port}, PostgreSQL {self.pg_port}",
                               "choose three different ports")
        record = self._record()
        if record is not None and self._running_pid(record) is not None:
            if (record.port, record.admin_port) != (self.port, self.admin_port):
                raise self._failed(
                    f"this data directory's Marquez already runs on ports {record.port}/"
                    f"{record.admin_port}, not {self.port}/{self.admin_port}",
                    f"stop it first (down) or use port {record.port} and admin port "
                    f"{record.admin_port}")
            return self._await_health(record)
        jar, lib = self._installation()
        java = _java()
        bindir = _postgres_bindir(self._postgres.cluster_version())
        for name, port in (("application", self.port), ("admin", self.admin_port)):
            if not port_free(HOST, port):
                raise self._failed(
                    f"Marquez's {name} port {port} on {HOST} is held by another process",
                    "stop that process (another Marquez? `docker ps`, `ss -ltnp`) or choose "
                    "other ports (port=..., admin_port=...)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        postgres_pid = self._postgres.up(bindir, self.pg_port)
        self._postgres.ensure_database(bindir)
        (self.data_dir / CONFIG_FILE).write_text(CONFIG.format(
            host=HOST, port=self.port, admin_port=self.admin_port, pg_port=self.pg_port,
            db=DB_NAME, user=DB_USER, password=DB_PASSWORD,
            log=json.dumps(str(self.log_file))))
        classpath = os.pathsep.join([str(jar), str(lib / "*")])
        command = [java, *JVM_OPTIONS, "-cp", classpath, "marquez.MarquezApp", "server",
                   str(self.data_dir / CONFIG_FILE)]
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(command, cwd=self.data_dir, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        record = _Record(self.port, self.admin_port, self.pg_port, proc.pid, postgres_pid)
        self._write_record(record)
        return self._await_health(record)

    def down(self, grace: float = 20.0) -> bool:
        """Stop Marquez gracefully, then PostgreSQL; True if either was running."""
        record = self._record()
        pid = self._running_pid(record)
        if record is not None and pid is not None:
            stop_java(pid, self.data_dir, grace)
        postgres_stopped = self._postgres.down()
        if record is not None:
            self._write_record(_Record(record.port, record.admin_port, record.pg_port,
                                       None, None))
        return pid is not None or postgres_stopped

    def get(self, path: str, **params: Any) -> Any:
        """The JSON answer of ``GET <url>/api/v1/<path>?<params>``."""
        url = f"{self.url}/api/v1/{path.lstrip('/')}"
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        try:
            with _LOCAL.open(url, timeout=30) as response:
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

    def _await_health(self, record: _Record) -> MarquezStatus:
        """The status once the recorded Marquez is healthy; a clear error if it exits or stalls."""
        admin = f"http://{HOST}:{record.admin_port}"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline and self._running_pid(record) is not None:
            if _healthy(admin):
                return self.status()
            time.sleep(0.5)
        exited = self._running_pid(record) is None
        self.down(grace=5.0)
        reason = "exited" if exited else f"was not healthy within {self.startup_timeout:.0f}s"
        raise self._failed(f"Marquez at {self.url} {reason}",
                           f"last lines of {self.log_file}:\n{log_tail(self.log_file)}")

    def _failed(self, message: str, hint: str) -> LakehouseError:
        return LakehouseError(ErrorCode.MARQUEZ_START_FAILED, message, hint=hint,
                              url=self.url, data_dir=str(self.data_dir))

    def _record(self) -> _Record | None:
        return read_state(self.data_dir / STATE_FILE, _Record)

    def _write_record(self, record: _Record) -> None:
        write_state(self.data_dir / STATE_FILE, record)

    def _running_pid(self, record: _Record | None) -> int | None:
        return None if record is None else running_java(record.pid, self.data_dir)


class _Postgres:
    """The PostgreSQL cluster of a Marquez data directory: ``<root>/data``, its log and
    unix socket next to it, run as the ``postgres`` OS user when we are root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.as_root = os.geteuid() == 0

    def cluster_version(self) -> str | None:
        """The major version the cluster was initialised with, None before ``initdb``."""
        try:
            return (self.data / "PG_VERSION").read_text().strip()
        except OSError:
            return None

    def pid(self) -> int | None:
        """The postmaster's pid if it runs on this cluster (from ``postmaster.pid``)."""
        fields = self._postmaster_fields()
        if len(fields) < 2 or not fields[0].isdigit() or fields[1] != str(self.data):
            return None
        pid = int(fields[0])
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return None
        return pid if name in ("postgres", "postmaster") else None

    def up(self, bindir: Path, port: int) -> int:
        """Initialise the cluster once and start it on ``port``; the postmaster's pid."""
        pid = self.pid()
        if pid is not None and self._postmaster_fields()[3:4] == [str(port)]:
            return pid
        if pid is not None:  # ours, on another port: nothing uses it while Marquez is down
            self.down()
        if not port_free(HOST, port):
            raise LakehouseError(
                ErrorCode.MARQUEZ_START_FAILED,
                f"PostgreSQL port {port} on {HOST} is held by another process",
                hint="stop that process (`ss -ltnp`) or choose another port (pg_port=...)",
                data_dir=str(self.root.parent))
        self.root.mkdir(parents=True, exist_ok=True)
        self._own(self.root)
        self.root.chmod(0o700)
        self._check_reachable()
        if self.cluster_version() is None:
            self._run(bindir, "initdb", "-D", str(self.data), "-U", self._superuser(),
                      "-E", "UTF8", "--auth-local=peer", "--auth-host=scram-sha-256",
                      what=f"initialising the PostgreSQL cluster in {self.data}")
        socket_dir = self._socket_dir(port)
        options = f"-p {port} -k {shlex.quote(str(socket_dir))} -c listen_addresses={HOST}"
        self._run(bindir, "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start", what=f"starting PostgreSQL on port {port}")
        pid = self.pid()
        if pid is None:
            raise self._failed(f"PostgreSQL on port {port} exited right after starting")
        return pid

    def ensure_database(self, bindir: Path) -> None:
        """The ``marquez`` role and a ``marquez`` database it owns (PostgreSQL 15 gives
        ``public`` schema rights only to the database owner)."""
        self._psql(bindir, f"""DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{DB_USER}') THEN
                CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}';
              END IF;
            END $$;""")
        if not self._psql(bindir, f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"):
            self._psql(bindir, f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")

    def down(self) -> bool:
        """Stop the cluster (fast shutdown: sessions are ended); True if it was running."""
        pid = self.pid()
        if pid is None:
            return False
        socket_dir = self._postmaster_fields()[4:5]
        bindir = _postgres_bindir(self.cluster_version())
        for mode in ("fast", "immediate"):
            subprocess.run([*self._prefix(), str(bindir / "pg_ctl"), "-D", str(self.data),
                            "-m", mode, "-w", "-t", "60", "stop"], cwd=self.root,
                           stdin=subprocess.DEVNULL, capture_output=True, check=False)
            if self.pid() is None:
                break
        if socket_dir and not Path(socket_dir[0]).is_relative_to(self.root):
            shutil.rmtree(socket_dir[0], ignore_errors=True)
        return True

    def _postmaster_fields(self) -> list[str]:
        """``postmaster.pid``: pid, data dir, start time, port, socket dir, address, ..."""
        try:
            return (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _socket_dir(self, port: int) -> Path:
        """A folder the server may write its unix socket to: ``<root>/run``, or a fresh
        temporary one when that path is too long for a socket (108 bytes on Linux)."""
        socket_dir = self.root / "run"
        if len(str(socket_dir / f".s.PGSQL.{port}.lock")) >= 100:
            socket_dir = Path(tempfile.mkdtemp(prefix="lakehouse-pg-"))
        socket_dir.mkdir(exist_ok=True)
        self._own(socket_dir)
        return socket_dir

    def _psql(self, bindir: Path, sql: str) -> str:
        """Run SQL as the superuser over the unix socket; its unaligned output."""
        fields = self._postmaster_fields()
        return self._run(bindir, "psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
                         "-h", fields[4], "-p", fields[3], "-U", self._superuser(),
                         "-d", "postgres", "-c", sql,
                         what="creating the marquez role and database").strip()

    def _run(self, bindir: Path, program: str, *args: str, what: str) -> str:
        command = [*self._prefix(), str(bindir / program), *args]
        result = subprocess.run(command, cwd=self.root, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()[-1500:]
            log = f"\nlast lines of {self.log}:\n{log_tail(self.log)}" if self.log.exists() else ""
            raise self._failed(f"{what} failed: {output or f'exit code {result.returncode}'}",
                               f"command: {shlex.join(command)}{log}")
        return result.stdout

    def _prefix(self) -> list[str]:
        """PostgreSQL refuses to run as root: as root, run its programs as ``postgres``."""
        return ["runuser", "-u", PG_OS_USER, "--"] if self.as_root else []

    def _superuser(self) -> str:
        """The cluster's superuser: named like the OS user its programs run as (peer auth)."""
        return PG_OS_USER if self.as_root else pwd.getpwuid(os.geteuid()).pw_name

    def _own(self, path: Path) -> None:
        if self.as_root:
            try:
                shutil.chown(path, PG_OS_USER, PG_OS_USER)
            except LookupError as exc:
                raise LakehouseError(
                    ErrorCode.MARQUEZ_NOT_INSTALLED,
                    f"running as root, but there is no {PG_OS_USER!r} OS user to run "
                    f"PostgreSQL as", hint="apt-get install postgresql (it creates the user)"
                ) from exc

    def _check_reachable(self) -> None:
        """As root, the ``postgres`` user must be able to reach ``root`` (every folder
        above it searchable), which a private home or pytest's 0700 temp folders are not."""
        if not self.as_root or self._postgres_can("-w", self.root):
            return
        blocked = next((folder for folder in reversed(self.root.parents)
                        if not self._postgres_can("-x", folder)), self.root)
        raise self._failed(
            f"the {PG_OS_USER} OS user cannot reach {self.root} ({blocked} is not searchable "
            f"by it); PostgreSQL runs as {PG_OS_USER} because it refuses to run as root",
            f"chmod o+x {blocked} (search only, not listing), or keep the Marquez data "
            f"directory where {PG_OS_USER} can reach it")

    def _postgres_can(self, test: str, path: Path) -> bool:
        return subprocess.run([*self._prefix(), "test", test, str(path)], cwd="/",
                              capture_output=True, check=False).returncode == 0

    def _failed(self, message: str, hint: str = "") -> LakehouseError:
        return LakehouseError(ErrorCode.MARQUEZ_START_FAILED, message, hint=hint,
                              data_dir=str(self.root.parent))


def _postgres_bindir(cluster_version: str | None) -> Path:
    """Where PostgreSQL's server programs are: the existing cluster's major version first,
    then ``pg_config --bindir``, then the newest ``/usr/lib/postgresql/*/bin``."""
    candidates: list[Path] = []
    if cluster_version:
        candidates.append(Path("/usr/lib/postgresql", cluster_version, "bin"))
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                check=False)
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if all((bindir / program).is_file() for program in ("initdb", "pg_ctl", "psql")):
            return bindir
    raise LakehouseError(
        ErrorCode.MARQUEZ_NOT_INSTALLED,
        "no PostgreSQL server programs (initdb, pg_ctl, psql) found via pg_config --bindir, "
        "in /usr/lib/postgresql/*/bin or on PATH; Marquez keeps its metadata in PostgreSQL",
        hint="apt-get install postgresql")


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


_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""An opener that never sends requests for 127.0.0.1 through an HTTP proxy."""


def _healthy(admin_url: str) -> bool:
    """Whether Marquez's admin healthcheck (its database included) passes."""
    try:
        with _LOCAL.open(f"{admin_url}/healthcheck", timeout=2) as response:
            return int(response.status) == 200
    except (OSError, ValueError, http.client.HTTPException):
        return False
