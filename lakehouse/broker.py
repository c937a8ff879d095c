"""The embedded Kafka-protocol broker (noida-db) for the local default and the tests.

``up`` starts ``noida-db start --only kafka`` as a detached process, waits until it
answers a metadata request and records its pid; ``down`` stops it gracefully (SIGTERM,
then SIGKILL after a grace period); ``status`` says whether it runs. ``up`` twice is fine.
Nothing here is used when the configuration points at a real cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lakehouse.errors import ErrorCode, LakehouseError

PID_FILE = "lakehouse-broker.pid"
LOG_FILE = "lakehouse-broker.log"


@dataclass(frozen=True)
class BrokerStatus:
    """What ``lakehouse broker status`` reports."""

    running: bool
    answering: bool
    pid: int | None
    bootstrap: str
    data_dir: str

    def describe(self) -> str:
        """One line for humans."""
        if self.running and self.answering:
            return f"running (pid {self.pid}) at {self.bootstrap}, data in {self.data_dir}"
        if self.running:
            return f"started (pid {self.pid}) but not answering at {self.bootstrap} yet"
        if self.answering:
            return f"a broker not started by lakehouse answers at {self.bootstrap}"
        return f"not running (would listen on {self.bootstrap}, data in {self.data_dir})"


def noida_binary() -> Path:
    """The noida-db executable shipped inside the pinned ``noida-db`` wheel."""
    import noida_db
    binary = Path(noida_db.__file__).parent / "noida-db"
    if not binary.exists():
        raise LakehouseError(ErrorCode.BROKER_START_FAILED,
                             f"noida-db binary not found at {binary}",
                             hint="reinstall the project: make setup")
    return binary


class EmbeddedBroker:
    """Controls one noida-db process, identified by its data directory."""

    def __init__(self, bootstrap: str, data_dir: str, startup_timeout: float = 30.0) -> None:
        host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
        if "," in bootstrap or not port.isdigit():
            raise LakehouseError(
                ErrorCode.BROKER_NOT_EMBEDDED,
                f"the embedded broker needs a single host:port, not {bootstrap!r}",
                hint="set kafka.bootstrap_servers to e.g. 127.0.0.1:19092")
        self.host, self.port = host, int(port)
        self.bootstrap = f"{host}:{port}"
        self.data_dir = Path(data_dir)
        self.startup_timeout = startup_timeout

    @property
    def pid_file(self) -> Path:
        return self.data_dir / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.data_dir / LOG_FILE

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            # Reap it if it is our own exited child (tests start and stop it in-process).
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return None
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def answering(self, timeout: float = 2.0) -> bool:
        """Whether a Kafka broker answers a metadata request at the address."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0,
                             "socket.connection.setup.timeout.ms": 1000})
        try:
            admin.list_topics(timeout=timeout)
            return True
        except KafkaException:
            return False

    def status(self) -> BrokerStatus:
        """Is it running, and does it answer?"""
        pid = self._pid()
        return BrokerStatus(pid is not None, self.answering(), pid, self.bootstrap,
                            str(self.data_dir))

    def up(self) -> BrokerStatus:
        """Start the broker unless it already runs; return once it answers."""
        pid = self._pid()
        if pid is not None and self.answering():
            return self.status()
        if pid is None and self.answering(timeout=1.0):
            # Something already serves Kafka here (a previous broker or a real one): use it.
            return self.status()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if pid is None:
            with self.log_file.open("ab") as log:
                proc = subprocess.Popen(
                    [str(noida_binary()), "start", "--only", "kafka", "--host", self.host,
                     "--kafka-port", str(self.port), "--data-dir", str(self.data_dir)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._pid() is None:
                break
            if self.answering(timeout=1.0):
                return self.status()
            time.sleep(0.2)
        tail = self._log_tail()
        self.down()
        raise LakehouseError(
            ErrorCode.BROKER_START_FAILED,
            f"noida-db did not answer at {self.bootstrap} within {self.startup_timeout:.0f}s",
            hint=f"is port {self.port} taken? last lines of {self.log_file}:\n{tail}",
            bootstrap=self.bootstrap)

    def down(self, grace: float = 15.0) -> bool:
        """Stop the broker gracefully; True if one was running."""
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._pid() is not None:
            time.sleep(0.1)
        if self._pid() is not None:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _log_tail(self, lines: int = 10) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(line for line in text[-lines:] if "GLIBC" not in line)
