"""The PostgreSQL cluster a local Marquez keeps its metadata in: initialised once under
the Marquez data directory, started with ``pg_ctl`` on a port of its own, run as the
``postgres`` OS user when we are root (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import psutil

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.processes import last_lines, port_free

PG_OS_USER = "postgres"


class Postgres:
    """The PostgreSQL cluster of a Marquez data directory: ``<root>/data``, its log and
    unix socket next to it, run as the ``postgres`` OS user when we are root."""

    def __init__(self, root: Path, host: str) -> None:
        self.root = root
        self.host = host
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
            name = psutil.Process(pid).name()
        except psutil.Error:
            return None
        return pid if name in ("postgres", "postmaster") else None

    def up(self, bindir: Path, port: int) -> int:
        """Initialise the cluster once and start it on ``port``; the postmaster's pid."""
        pid = self.pid()
        if pid is not None and self._postmaster_fields()[3:4] == [str(port)]:
            return pid
        if pid is not None:  # ours, on another port: nothing uses it while Marquez is down
            self.down()
        if not port_free(self.host, port):
            raise LakehouseError(
                ErrorCode.MARQUEZ_START_FAILED,
                f"PostgreSQL port {port} on {self.host} is held by another process",
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
        options = f"-p {port} -k {shlex.quote(str(socket_dir))} -c listen_addresses={self.host}"
        self._run(bindir, "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start", what=f"starting PostgreSQL on port {port}")
        pid = self.pid()
        if pid is None:
            raise self._failed(f"PostgreSQL on port {port} exited right after starting")
        return pid

    def ensure_database(self, bindir: Path, name: str, user: str, password: str) -> None:
        """A role ``user`` and a database ``name`` it owns (PostgreSQL 15 gives ``public``
        schema rights only to the database owner)."""
        self._psql(bindir, f"""DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN
                CREATE ROLE {user} LOGIN PASSWORD '{password}';
              END IF;
            END $$;""")
        if not self._psql(bindir, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
            self._psql(bindir, f"CREATE DATABASE {name} OWNER {user}")

    def down(self) -> bool:
        """Stop the cluster (fast shutdown: sessions are ended); True if it was running."""
        pid = self.pid()
        if pid is None:
            return False
        socket_dir = self._postmaster_fields()[4:5]
        bindir = postgres_bindir(self.cluster_version())
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
            log = f"\n{last_lines(self.log)}" if self.log.exists() else ""
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


def postgres_bindir(cluster_version: str | None) -> Path:
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
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True,
                         key=lambda path: [int(part) for part in re.findall(r"\d+", path.parent.name)])
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
