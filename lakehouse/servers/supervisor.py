"""The one supervisor of the servers a warehouse runs beside its data: the Kafka broker,
the schema registry, Marquez.

A ``Spec`` says what is a server's own: its record and log files, where it listens and
is reached, how to ask whether it answers, what its errors say. ``up``, ``down`` and
``status`` do the same for each: the record (pid and ports, JSON) in the data directory,
the JVM launched with its output in the log, probed until it answers or the startup
timeout passes (then stopped, the log's last lines in the error), SIGTERM and after a
grace SIGKILL to stop it. The server's own ``start`` refuses a port held by another
process, and its ``moved`` a running server that listens elsewhere.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.processes import (
    last_lines,
    launch,
    port_free,
    read_state,
    running_process,
    stop_process,
    write_state,
)

LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""An opener that never sends requests for 127.0.0.1 through an HTTP proxy."""


class Record(Protocol):
    """A server's record: a dataclass whose ``pid`` is its JVM's (None once stopped)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def pid(self) -> int | None: ...


R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class Spec(Generic[R]):
    """How the supervisor keeps one server of a data directory."""

    title: str
    """What a failed start calls it, with where: ``Apache Kafka at 127.0.0.1:19092``."""
    data_dir: Path
    record_type: type[R]
    record_file: str
    log_name: str
    host: str
    ports: tuple[int, ...]
    """Where it is to listen: one held by another process is ``port_taken``."""
    address: str
    """Where clients are to reach it (a bootstrap address, a URL)."""
    address_of: Callable[[R], str]
    """Where clients reach the recorded server."""
    answers: Callable[[R], bool]
    """Whether the recorded server answers (a probe of a second or two)."""
    failed: ErrorCode
    """The code of a start that fails."""
    fields: Mapping[str, str] = field(default_factory=dict)
    """What its errors carry besides ``data_dir``."""
    startup_timeout: float = 30.0
    interval: float = 0.2
    """Seconds between two probes while it starts."""
    not_ready: str = "did not answer"
    keeps: str = "data"
    """What the data directory holds, in words."""
    program: str = "java"
    """The server's process name (its executable's)."""

    @property
    def log_file(self) -> Path:
        """The server's log (its own lines and anything the JVM prints)."""
        return self.data_dir / self.log_name


@dataclass(frozen=True)
class ServerStatus:
    """Whether a local server the project starts runs and answers, as ``<name> status``
    reports it."""

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


def _alive(spec: Spec[Any], pid: int | None) -> int | None:
    """``pid`` if it still is the server's process."""
    return running_process(pid, spec.data_dir, spec.program)


def read(spec: Spec[R]) -> R | None:
    """The server's record, None if it has none (or an unreadable one)."""
    return read_state(spec.data_dir / spec.record_file, spec.record_type)


def status(spec: Spec[R]) -> ServerStatus:
    """Does the server run, and does it answer?"""
    record = read(spec)
    pid = None if record is None else _alive(spec, record.pid)
    if record is not None and pid is not None:
        return ServerStatus(True, spec.answers(record), pid, spec.address_of(record),
                            str(spec.data_dir), keeps=spec.keeps)
    taken = not all(port_free(spec.host, port) for port in spec.ports)
    return ServerStatus(False, False, None, spec.address, str(spec.data_dir), port_taken=taken,
                        keeps=spec.keeps)


def up(spec: Spec[R], start: Callable[[R | None], R],
       moved: Callable[[R], LakehouseError | None], stop: Callable[[float], object]) -> bool:
    """Start the server unless it runs, and return once it answers; True if it started it.
    ``start`` (given the last record) launches it and returns the new record; ``moved`` is
    the error for a running one listening elsewhere (None if it does not); ``stop``
    stops what failed to start."""
    record = read(spec)
    started = record is None or _alive(spec, record.pid) is None
    if record is not None and not started:
        error = moved(record)
        if error is not None:
            raise error
    else:
        record = start(record)
        write_state(spec.data_dir / spec.record_file, record)
    deadline = time.monotonic() + spec.startup_timeout
    while time.monotonic() < deadline and _alive(spec, record.pid) is not None:
        if spec.answers(record):
            return started
        time.sleep(spec.interval)
    exited = _alive(spec, record.pid) is None
    stop(5.0)
    reason = "exited" if exited else f"{spec.not_ready} within {spec.startup_timeout:.0f}s"
    raise failed(spec, f"{spec.title} {reason}", last_lines(spec.log_file))


def down(spec: Spec[R], grace: float, **cleared: None) -> bool:
    """Stop the server gracefully; True if it was running. Its record keeps its ports,
    its pid (and the ``cleared`` fields) emptied."""
    record = read(spec)
    if record is None:
        return False
    pid = _alive(spec, record.pid)
    if pid is not None:
        stop_process(pid, spec.data_dir, grace, spec.program)
    write_state(spec.data_dir / spec.record_file, replace(record, pid=None, **cleared))
    return pid is not None


def spawn(spec: Spec[Any], command: Sequence[str], hint: str) -> subprocess.Popen[bytes]:
    """``command`` (``spec.program`` first) launched in the data directory, which is how
    ``running_process`` knows the server, its output appended to the log; ``hint`` says
    what to do when there is no such program."""
    try:
        return launch(command, spec.data_dir, spec.log_file)
    except FileNotFoundError as exc:
        what = "Java" if spec.program == "java" else spec.program
        raise LakehouseError(spec.failed, f"no {what} at {command[0]}", hint=hint) from exc


def failed(spec: Spec[Any], message: str, hint: str,
           code: ErrorCode | None = None) -> LakehouseError:
    """The server's error (``spec.failed`` unless ``code``), with its fields."""
    return LakehouseError(code or spec.failed, message, hint=hint, **spec.fields,
                          data_dir=str(spec.data_dir))


class Server(ABC, Generic[R]):
    """A server its ``_spec`` describes, with ``up``, ``down``, ``status`` and its log; a
    subclass gives its own ``_start`` and ``_moved`` (see ``up`` above)."""

    _spec: Spec[R]

    @property
    def log_file(self) -> Path:
        """The server's log (its own lines and anything the JVM prints)."""
        return self._spec.log_file

    def status(self) -> ServerStatus:
        """Is the server running, and does it answer?"""
        return status(self._spec)

    def up(self) -> ServerStatus:
        """Start the server unless it already runs; return once it answers."""
        up(self._spec, self._start, self._moved, self.down)
        return self.status()

    def down(self, grace: float = 20.0) -> bool:
        """Stop the server gracefully; True if one was running."""
        return down(self._spec, grace)

    @abstractmethod
    def _start(self, record: R | None) -> R:
        """Launch the server (given its last record); its new record."""

    @abstractmethod
    def _moved(self, record: R) -> LakehouseError | None:
        """The error for the running server if it listens elsewhere, else None."""
