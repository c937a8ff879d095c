"""A local Spark standalone cluster, to run the ``pipelines/`` jobs the way a cluster runs
them, and the ``spark-submit`` command that sends a layer job to one.

The cluster is started from the pyspark wheel's own classes: a Master and N Workers,
each a JVM launched by the wheel's ``bin/spark-class`` (the wheel ships no ``sbin``
start scripts; ``spark-class`` computes Spark's JVM options and exports
``SPARK_SCALA_VERSION``, without which a Worker cannot build an executor's command), with
``SPARK_HOME`` the installed pyspark package. Everything binds to 127.0.0.1 on free ports;
each Worker offers one core and 1 GB and keeps its executors' folders (jars and files
fetched from the driver, stdout, stderr) in ``<data dir>/work-<n>``, emptied by a fresh
start and kept by ``down`` for inspection. Pids and ports are recorded in ``cluster.json``;
``up`` twice is fine.

``submit_argv`` is the ``spark-submit`` of a layer job against any master URL: the
Spark jars ``make setup`` fetched go with ``--jars`` (the driver's file server ships them
to the executors, no Maven at run time) and the project's Python packages as a zip with
``--py-files``; each job takes at most two executor cores, so it never holds a cluster's
every core. ``submit`` runs it (``lakehouse cluster submit``); on the local cluster the
daemons, drivers and executors run with ``SHORT_JVM_OPTIONS``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.processes import (
    free_ports,
    last_lines,
    launch,
    read_state,
    running_process,
    stop_process,
    write_state,
)
from lakehouse.jvm import PROJECT_ROOT, JarSet, jars
from lakehouse.printing import Printer
from lakehouse.servers.supervisor import LOCAL

HOST = "127.0.0.1"
STATE_FILE = "cluster.json"
MASTER_LOG = "master.log"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
WORKER_CORES = 1
WORKER_MEMORY = "1g"
DAEMON_MEMORY = "512m"
"""Heap of the Master and Worker JVMs (``SPARK_DAEMON_MEMORY``; Spark's default is 1g)."""
SHORT_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m -XX:+UseSerialGC"
"""For the JVMs of a small local cluster: the C1 compiler only and the serial collector.
A layer job run until idle lives a few minutes, and on two cores its driver and
executors otherwise spend about half their CPU time in the C2 compiler's threads (measured:
the gold job took half the CPU and half the time with these). Without C2 the JVM reserves
only 48 MB for compiled code, which a gold driver fills ("CodeCache is full. Compiler has
been disabled"): the default 240 MB again."""
LAYERS = ("bronze", "silver", "gold")
PY_PACKAGES = ("lakehouse", "bronze", "silver", "gold", "pipelines")
"""What ``--py-files`` ships: the engine, the table definitions and the job entry points."""
PY_FILES = "lakehouse-py.zip"
TOTAL_EXECUTOR_CORES = 2
EXECUTOR_CORES = 1
EXECUTOR_MEMORY = "768m"
"""Fits a Worker's 1 GB with room for the executor's off-heap memory."""

def spark_home() -> Path:
    """The installed pyspark package: the Spark distribution the wheel carries (its
    ``jars/`` and ``bin/``)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise LakehouseError(ErrorCode.CLUSTER_START_FAILED, "pyspark is not installed",
                             hint="run `make setup` (it installs the pinned pyspark)")
    return Path(spec.origin).parent


def cluster_data_dir(config: Config) -> str:
    """Where the warehouse's local cluster keeps its state, logs and work folders (on
    local disk, also beside a warehouse on an object store)."""
    return config.local_dir("cluster")


@dataclass(frozen=True)
class WorkerStatus:
    """One Worker as the Master reports it."""

    id: str
    host: str
    port: int
    state: str
    cores: int
    memory_mb: int


@dataclass(frozen=True)
class ClusterStatus:
    """What ``lakehouse cluster status`` reports."""

    running: bool
    master_url: str
    web_ui: str
    data_dir: str
    expected_workers: int
    master_pid: int | None = None
    worker_pids: tuple[int, ...] = ()
    workers: tuple[WorkerStatus, ...] = ()
    """The Workers the Master's web UI lists (empty when it does not answer)."""
    active_apps: tuple[str, ...] = ()
    completed_apps: tuple[str, ...] = ()

    @property
    def alive_workers(self) -> int:
        """Workers registered with the Master and ALIVE."""
        return sum(1 for w in self.workers if w.state == "ALIVE")

    @property
    def healthy(self) -> bool:
        """The Master runs and every Worker is ALIVE."""
        return self.running and self.alive_workers >= self.expected_workers

    def describe(self) -> str:
        """One line for humans."""
        if not self.running:
            return f"not running (data in {self.data_dir})"
        return (f"running (master pid {self.master_pid}) at {self.master_url}, web UI "
                f"{self.web_ui}, {self.alive_workers}/{self.expected_workers} workers ALIVE "
                f"({WORKER_CORES} core, {WORKER_MEMORY} each), data in {self.data_dir}")


@dataclass(frozen=True)
class _Record:
    """What ``cluster.json`` keeps about the data directory's cluster."""

    port: int
    webui_port: int
    master_pid: int | None
    worker_pids: list[int | None] = field(default_factory=list)
    worker_webui_ports: list[int] = field(default_factory=list)


class LocalCluster:
    """Controls the Spark standalone cluster (a Master and its Workers) of one data
    directory."""

    def __init__(self, data_dir: str | Path, workers: int = 2,
                 startup_timeout: float = 120.0) -> None:
        if workers < 1:
            raise LakehouseError(ErrorCode.BAD_ARGUMENTS,
                                 f"a cluster needs at least one worker, not {workers}")
        self.data_dir = Path(data_dir).resolve()
        self.workers = workers
        self.startup_timeout = startup_timeout

    def work_dir(self, n: int) -> Path:
        """Worker ``n``'s (1-based) folder: one sub-folder per application, one per
        executor in it, with the executor's stdout and stderr and what it fetched."""
        return self.data_dir / f"work-{n}"

    def worker_log(self, n: int) -> Path:
        """Worker ``n``'s own log."""
        return self.data_dir / f"worker-{n}.log"

    @property
    def master_log(self) -> Path:
        """The Master's log."""
        return self.data_dir / MASTER_LOG

    def status(self) -> ClusterStatus:
        """Does the cluster run, and what does its Master report?"""
        record = self._record()
        master = self._pid(record.master_pid) if record else None
        if record is None or master is None:
            return ClusterStatus(False, "", "", str(self.data_dir),
                                 len(record.worker_pids) if record else self.workers)
        web_ui = f"http://{HOST}:{record.webui_port}"
        state = master_state(web_ui) or {}
        return ClusterStatus(
            True, f"spark://{HOST}:{record.port}", web_ui, str(self.data_dir),
            len(record.worker_pids), master,
            tuple(p for p in map(self._pid, record.worker_pids) if p is not None),
            tuple(WorkerStatus(str(w.get("id", "")), str(w.get("host", "")),
                               int(w.get("port", 0)), str(w.get("state", "")),
                               int(w.get("cores", 0)), int(w.get("memory", 0)))
                  for w in state.get("workers", [])),
            tuple(a["id"] for a in state.get("activeapps", [])),
            tuple(a["id"] for a in state.get("completedapps", [])))

    def up(self) -> ClusterStatus:
        """Start the Master and the Workers unless they run; return once every Worker is
        ALIVE."""
        record = self._record()
        if record is not None and self._pid(record.master_pid) is not None:
            if len(record.worker_pids) != self.workers:
                raise LakehouseError(
                    ErrorCode.CLUSTER_START_FAILED,
                    f"the cluster of {self.data_dir} already runs with "
                    f"{len(record.worker_pids)} workers, not {self.workers}",
                    hint="stop it first (lakehouse cluster down) or keep its size",
                    data_dir=str(self.data_dir))
            if all(self._pid(p) is not None for p in record.worker_pids):
                return self._await_workers(record, [])
        self.down(grace=5.0)  # what is left of an earlier start: begin afresh
        home = spark_home()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port, webui_port, *worker_ports = free_ports(HOST, 2 + self.workers)
        procs = [self._spark_class(home, self.master_log, MASTER_CLASS, "--host", HOST,
                                   "--port", str(port), "--webui-port", str(webui_port))]
        record = _Record(port, webui_port, procs[0].pid)
        self._write_record(record)
        for n, ui_port in enumerate(worker_ports, start=1):
            # The previous start's executor folders (each holds a copy of every jar).
            shutil.rmtree(self.work_dir(n), ignore_errors=True)
            self.work_dir(n).mkdir()
            procs.append(self._spark_class(
                home, self.worker_log(n), WORKER_CLASS, "--host", HOST,
                "--webui-port", str(ui_port), "--cores", str(WORKER_CORES),
                "--memory", WORKER_MEMORY, "--work-dir", str(self.work_dir(n)),
                f"spark://{HOST}:{port}"))
        record = _Record(port, webui_port, procs[0].pid, [p.pid for p in procs[1:]],
                         list(worker_ports))
        self._write_record(record)
        return self._await_workers(record, procs)

    def down(self, grace: float = 20.0) -> bool:
        """Stop the Workers (they stop their executors), then the Master; True if any
        was running."""
        record = self._record()
        if record is None:
            return False
        stopped = False
        for pid in [*record.worker_pids, record.master_pid]:
            if pid is not None and self._pid(pid) is not None:
                stop_process(pid, self.data_dir, grace)
                stopped = True
        self._write_record(replace(record, master_pid=None,
                                   worker_pids=[None] * len(record.worker_pids)))
        return stopped

    def _spark_class(self, home: Path, log: Path, main: str,
                     *args: str) -> subprocess.Popen[bytes]:
        """``bin/spark-class main args`` detached, in the data directory (how ``_pid``
        knows its JVMs: spark-class ``exec``s java, so the pid stays the same), its
        output appended to ``log``."""
        env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": HOST,
               "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
               "SPARK_DAEMON_JAVA_OPTS": SHORT_JVM_OPTIONS}
        return launch([str(home / "bin" / "spark-class"), main, *args], self.data_dir, log, env)

    def _await_workers(self, record: _Record,
                       procs: Sequence[subprocess.Popen[bytes]]) -> ClusterStatus:
        """The status once every Worker is ALIVE; a clear error if a JVM exits or the
        Workers do not register in time."""
        web_ui = f"http://{HOST}:{record.webui_port}"
        deadline = time.monotonic() + self.startup_timeout
        exited: list[Path] = []
        while time.monotonic() < deadline and not exited:
            status = self.status()
            if status.healthy:
                return status
            time.sleep(0.5)
            exited = self._exited(record, procs)
        self.down(grace=5.0)
        logs = exited or self._logs(record)
        reason = (f"{', '.join(p.stem for p in exited)} exited" if exited
                  else f"not every worker was ALIVE at {web_ui} within "
                       f"{self.startup_timeout:.0f}s")
        raise LakehouseError(
            ErrorCode.CLUSTER_START_FAILED,
            f"the Spark standalone cluster of {self.data_dir} did not start: {reason}",
            hint="Java 17 must be on PATH or in JAVA_HOME; " + "; ".join(map(last_lines, logs)),
            data_dir=str(self.data_dir))

    def _exited(self, record: _Record, procs: Sequence[subprocess.Popen[bytes]]) -> list[Path]:
        """The logs of the cluster's JVMs that are gone."""
        logs = self._logs(record)
        if procs:  # ours: spark-class is a shell until it execs java
            return [log for log, proc in zip(logs, procs, strict=True)
                    if proc.poll() is not None]
        pids = [record.master_pid, *record.worker_pids]
        return [log for log, pid in zip(logs, pids, strict=True) if self._pid(pid) is None]

    def _logs(self, record: _Record) -> list[Path]:
        return [self.master_log, *map(self.worker_log, range(1, len(record.worker_pids) + 1))]

    def _record(self) -> _Record | None:
        return read_state(self.data_dir / STATE_FILE, _Record)

    def _write_record(self, record: _Record) -> None:
        write_state(self.data_dir / STATE_FILE, record)

    def _pid(self, pid: int | None) -> int | None:
        return running_process(pid, self.data_dir)


def master_state(web_ui: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The Master's state as its web UI serves it at ``/json/`` (workers, applications),
    None if it does not answer."""
    try:
        with LOCAL.open(f"{web_ui}/json/", timeout=timeout) as response:
            state = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def build_py_files(dest: Path, root: Path = PROJECT_ROOT,
                   packages: Sequence[str] = PY_PACKAGES) -> Path:
    """A fresh zip of the project's Python packages for ``--py-files`` (sources and
    package data, no bytecode), written next to ``dest`` first and then moved in place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for package in packages:
            for path in sorted((root / package).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts \
                        and path.suffix not in (".pyc", ".pyo"):
                    zf.write(path, path.relative_to(root).as_posix())
    partial.replace(dest)
    return dest


def submit_argv(layer: str, master: str, config_file: str, py_files: Path, *,
                jar_files: Sequence[Path], home: Path, python: str, log4j: Path,
                until_idle: bool = True, java_options: str = "",
                root: Path = PROJECT_ROOT) -> list[str]:
    """The ``spark-submit`` command line of one layer job against ``master`` (client
    deploy mode: the driver runs here, the tasks on the cluster's executors);
    ``java_options`` go to the driver's and the executors' JVMs."""
    if layer not in LAYERS:
        raise LakehouseError(ErrorCode.BAD_ARGUMENTS,
                             f"unknown layer {layer!r}; the jobs are {', '.join(LAYERS)}")
    driver_options = f"-Dlog4j2.configurationFile=file:{log4j} {java_options}".strip()
    executor = ["--conf", f"spark.executor.extraJavaOptions={java_options}"] if java_options \
        else []
    return [
        str(home / "bin" / "spark-submit"),
        "--master", master,
        "--deploy-mode", "client",
        "--jars", ",".join(str(j) for j in jar_files),
        "--py-files", str(py_files),
        "--total-executor-cores", str(TOTAL_EXECUTOR_CORES),
        "--executor-cores", str(EXECUTOR_CORES),
        "--executor-memory", EXECUTOR_MEMORY,
        "--conf", f"spark.pyspark.python={python}",
        "--conf", f"spark.driver.extraJavaOptions={driver_options}",
        *executor,
        str(root / "pipelines" / f"{layer}_job.py"),
        "--conf", config_file,
        *(["--until-idle"] if until_idle else []),
    ]


def submit(layer: str, master: str, config: Config, data_dir: Path, *,
           java_options: str = "", printer: Printer = print) -> float:
    """Run one layer job with ``spark-submit`` until idle, its output going to ours (and
    in our process group, so Ctrl-C stops it too); the seconds it took. A job that fails
    is LH-CLUSTER-003."""
    from lakehouse.spark import LOG4J_CONF
    home = spark_home()
    py_files = build_py_files(data_dir / PY_FILES)
    argv = submit_argv(layer, master, str(Path(config.source_file).resolve()), py_files,
                       jar_files=jars(JarSet.SPARK), home=home, python=sys.executable,
                       log4j=LOG4J_CONF, java_options=java_options)
    printer(f"$ {' '.join(_short(a) for a in argv)}")
    env = {**os.environ, "SPARK_HOME": str(home)}
    if urllib.parse.urlsplit(master).hostname in (HOST, "localhost"):
        env["SPARK_LOCAL_IP"] = HOST  # the driver too, so executors reach it on loopback
    started = time.monotonic()
    sys.stdout.flush()
    # From the project: a job's default expectations folder is the working directory's.
    code = subprocess.run(argv, env=env, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                          check=False).returncode
    took = time.monotonic() - started
    if code != 0:
        raise LakehouseError(
            ErrorCode.CLUSTER_SUBMIT_FAILED,
            f"the {layer} job on {master} failed (exit code {code}) after {took:.0f}s",
            hint="its output above says why; executors' logs are in the workers' work "
                 "folders (<data dir>/work-<n>/<app id>/<executor>/stderr), the cluster's in "
                 f"{data_dir}", layer=layer, master=master)
    return took


def _short(arg: str) -> str:
    """The ``--jars`` list shortened for the progress line."""
    jar_list = arg.split(",")
    if len(jar_list) > 2 and all(a.endswith(".jar") for a in jar_list):
        return f"{Path(jar_list[0]).parent}/{{{len(jar_list)} jars}}"
    return arg

