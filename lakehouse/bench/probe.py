"""CPU time and peak memory of the processes a benchmark runs, sampled from Linux ``/proc``.

Python workers cannot be measured any other way: pyspark's daemon ignores SIGCHLD, so
their CPU never reaches anyone's ``RUSAGE_CHILDREN``. A ``Probe`` therefore samples every
process of each role (the driver's Python, its JVM, the Python workers under that JVM,
the broker) every ``interval`` seconds, keeping per process its peak resident set
(``VmHWM``) and its last cumulative CPU time; a process that exits between two samples
loses at most one interval of CPU.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    """One process at one instant."""

    cpu_seconds: float
    """User + system CPU time so far."""
    peak_rss_kb: int
    """Its peak resident set so far (``VmHWM``)."""
    rss_kb: int


def sample(pid: int) -> Sample | None:
    """The process's figures now, or None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    kb = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
          if line.startswith(("VmHWM:", "VmRSS:"))}
    return Sample((int(fields[11]) + int(fields[12])) / TICKS, kb.get("VmHWM", 0),
                  kb.get("VmRSS", 0))


def python_workers(jvm: int) -> list[int]:
    """The pyspark daemon and workers below a driver or executor JVM (not the short-lived
    helpers the JVM spawns, which carry its own memory figures until they exec)."""
    out = []
    try:
        below = psutil.Process(jvm).children(recursive=True)
    except psutil.Error:
        return []
    for process in below:
        try:
            if any("pyspark" in arg for arg in process.cmdline()):
                out.append(process.pid)
        except psutil.Error:
            continue
    return out


@dataclass(frozen=True)
class Usage:
    """What the processes of one role used."""

    cpu_seconds: float
    peak_rss_mb: float
    """The largest peak resident set of any one of its processes."""
    peak_total_rss_mb: float
    """The largest sum of its processes' resident sets seen at one sample."""


Roles = Mapping[str, Callable[[], Iterable[int]]]
"""Role name -> its processes' pids now."""


class Probe:
    """Samples the processes of each role in a background thread until ``stop``."""

    def __init__(self, roles: Roles, interval: float = 0.5) -> None:
        self.roles = roles
        self.interval = interval
        self._last: dict[str, dict[int, Sample]] = {r: {} for r in roles}
        self._peak_total: dict[str, int] = dict.fromkeys(roles, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-probe", daemon=True)

    def __enter__(self) -> Probe:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Take one sample of every role's processes now."""
        with self._lock:
            for role, pids in self.roles.items():
                total = 0
                for pid in pids():
                    s = sample(pid)
                    if s is not None:
                        self._last[role][pid] = s
                        total += s.rss_kb
                self._peak_total[role] = max(self._peak_total[role], total)

    def usage(self) -> dict[str, Usage]:
        """Each role's CPU time and memory so far."""
        with self._lock:
            return {role: Usage(sum(s.cpu_seconds for s in seen.values()),
                                max((s.peak_rss_kb for s in seen.values()), default=0) / 1024,
                                self._peak_total[role] / 1024)
                    for role, seen in self._last.items()}

    def cpu_seconds(self) -> float:
        """CPU time of every sampled process so far (the bench's core-seconds)."""
        return sum(u.cpu_seconds for u in self.usage().values())
