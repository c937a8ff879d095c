"""The processes of the local servers the project starts (the broker, the schema
registry, Marquez, the Spark cluster's daemons): launching one with its log, telling
whether a recorded pid still is that server, stopping it, its state file, free ports,
its log's last lines."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import psutil

T = TypeVar("T")


def launch(command: Sequence[str], cwd: Path, log: Path,
           env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``command`` run in ``cwd``, in a session of its own (our Ctrl-C does not reach it),
    its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def running_process(pid: int | None, work_dir: Path, program: str = "java") -> int | None:
    """``pid`` if that process still is ``program`` (a JVM unless said) working in
    ``work_dir``, so a recycled pid is never taken for the server; an exited child of ours
    is reaped."""
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            proc.wait(timeout=0)  # reaps it if it is our child
            return None
        return pid if (proc.name(), proc.cwd()) == (program, str(work_dir)) else None
    except psutil.Error:  # gone, not ours to inspect, or a zombie we cannot reap
        return None


def stop_process(pid: int, work_dir: Path, grace: float, program: str = "java") -> None:
    """SIGTERM, then SIGKILL if the server still runs after ``grace`` seconds; returns once
    it is gone."""
    if running_process(pid, work_dir, program) is None:
        return
    try:
        proc = psutil.Process(pid)
        proc.terminate()
        if not _ends(proc, grace):
            proc.kill()
            _ends(proc, None)
    except psutil.NoSuchProcess:
        pass


def _ends(proc: psutil.Process, timeout: float | None) -> bool:
    """Whether ``proc`` ends within ``timeout`` seconds (None: however long it takes); a
    zombie nobody reaps has ended."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            proc.wait(timeout=0.1)  # reaps a child of ours
            return True
        except psutil.TimeoutExpired:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port (a port left in TIME_WAIT counts as free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports nobody listens on now (the OS picks them, held together
    while it does, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port(host: str) -> int:
    """A port nobody listens on now (the OS picks it)."""
    return free_ports(host, 1)[0]


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


def last_lines(log: Path) -> str:
    """A hint quoting the log: ``last lines of <log>:`` and its ``log_tail``."""
    return f"last lines of {log}:\n{log_tail(log)}"
