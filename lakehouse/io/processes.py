"""Local server processes the project starts (the embedded broker, a local Marquez):
their state files, telling whether a recorded pid still is that server, stopping it,
finding free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def running_java(pid: int | None, work_dir: Path) -> int | None:
    """``pid`` if that process still is a JVM working in ``work_dir`` (Linux ``/proc``),
    so a recycled pid is never taken for the server; an exited child of ours is reaped."""
    if pid is None:
        return None
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None
    except ChildProcessError:
        pass
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return pid if (cwd, name) == (str(work_dir), "java") else None


def stop_java(pid: int, work_dir: Path, grace: float) -> None:
    """SIGTERM, then SIGKILL if the JVM still runs after ``grace`` seconds; returns once
    it is gone."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and running_java(pid, work_dir) is not None:
        time.sleep(0.1)
    if running_java(pid, work_dir) is not None:
        os.kill(pid, signal.SIGKILL)
        while running_java(pid, work_dir) is not None:
            time.sleep(0.05)


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port (a port left in TIME_WAIT counts as free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str) -> int:
    """A port nobody listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def read_state(path: Path, kind: type[T]) -> T | None:
    """The dataclass a server's state file holds (None if missing or unreadable)."""
    try:
        return kind(**json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def write_state(path: Path, record: Any) -> None:
    """Record a server's state (a dataclass) as JSON."""
    path.write_text(json.dumps(asdict(record), indent=2) + "\n")


def log_tail(log: Path, lines: int = 12) -> str:
    """The last message lines of a server's log, for an error's hint: stack frames and
    configuration dumps (indented, or Dropwizard's ``! at``) left out, lines cut at 300."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    kept = [line[:300] for line in text
            if line.strip() and not line[0].isspace() and not line.startswith(("! at ", "! ..."))]
    return "\n".join(kept[-lines:]) or "(empty log)"


@dataclass(frozen=True)
class ServerStatus:
    """Whether a local server the project starts (the broker, the schema registry) runs
    and answers, as ``<name> status`` reports it."""

    running: bool
    answering: bool
    pid: int | None
    address: str
    """Where clients reach it (bootstrap servers, a URL)."""
    data_dir: str
    port_taken: bool = False
    """Not running, and something else holds its port."""
    keeps: str = "data"
    """What ``data_dir`` holds, in words."""

    def describe(self) -> str:
        """One line for humans."""
        if self.running and self.answering:
            return f"running (pid {self.pid}) at {self.address}, {self.keeps} in {self.data_dir}"
        if self.running:
            return f"started (pid {self.pid}) but not answering at {self.address} yet"
        if self.port_taken:
            return f"not running; {self.address} is held by another process"
        return f"not running (would serve {self.address}, {self.keeps} in {self.data_dir})"
