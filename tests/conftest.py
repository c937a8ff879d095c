"""Shared fixtures: one real Apache Kafka broker and one local[2] SparkSession per session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from hypothesis import settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakehouse.audit.integrity import Integrity
    from lakehouse.servers.seaweedfs import EmbeddedStore

ROOT = Path(__file__).resolve().parents[1]

# Each Hypothesis example of the routing property runs a Spark plan (about 8 s here): CI
# tries 12; `pytest --hypothesis-profile=full` tries 100.
settings.register_profile("ci", max_examples=12)
settings.register_profile("full", max_examples=100)
settings.load_profile("ci")


NEEDS_PROCESSES = {"broker", "spark"}
"""Fixtures that start a broker process or a Spark session."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``integration`` every test that needs a broker or Spark (its fixtures say so)
    or lives among the end-to-end and chaos scenarios: ``make unit`` runs the others."""
    for item in items:
        if NEEDS_PROCESSES & set(getattr(item, "fixturenames", ())) \
                or item.path.parent.name in ("e2e", "chaos"):
            item.add_marker(pytest.mark.integration)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lakehouse(config: Path, *args: str, env: Mapping[str, str] | None = None,
              crash_at: str | None = None, timeout: float = 600,
              project: Path = ROOT) -> subprocess.CompletedProcess:
    """``lakehouse --conf CONFIG ARGS...`` in a process group of its own, as a user runs it
    from the ``project`` folder, whose definitions it imports (``crash_at`` sets
    ``LAKEHOUSE_CRASH_AT``; the crash kills the group: Python and its JVM). A run that
    outlives ``timeout`` fails the test with the tail of its output and a thread dump of
    its JVMs, so a hang in CI says where it hung."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(
        [str(project), str(ROOT)])), **(env or {})}
    full_env.pop("LAKEHOUSE_CRASH_AT", None)
    if crash_at:
        full_env["LAKEHOUSE_CRASH_AT"] = crash_at
    argv = [sys.executable, "-m", "lakehouse.cli", "--conf", str(config), *args]
    with subprocess.Popen(argv, cwd=project, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _dump_java_threads(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(
                f"{' '.join(args)} did not finish in {timeout:.0f}s\n--- stdout (tail) ---\n"
                f"{out[-20000:]}\n--- stderr (tail) ---\n{err[-5000:]}") from None
    if proc.returncode != 0 and not crash_at:
        # pytest shows a failing test's captured stdout: the run's own lines and the
        # first lines of each Java exception, not only the tail the assertion quotes.
        print(f"--- lakehouse {' '.join(args)} exited {proc.returncode} ---\n{out[-20000:]}"
              f"\n--- stderr without stack frames ---\n{_without_frames(err)}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


class Job(subprocess.Popen[str]):
    """A background ``lakehouse`` command whose output goes to files beside its warehouse,
    not to pipes: a job that runs for minutes fills a pipe nobody reads, and then stalls
    on its next print. ``communicate`` waits, then returns what it printed."""

    def __init__(self, argv: list[str], logs: Path) -> None:
        self.out_path = logs.with_suffix(".out")
        self.err_path = logs.with_suffix(".err")
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            super().__init__(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=out, stderr=err, text=True, start_new_session=True)

    def communicate(self, input: str | None = None,
                    timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return self.out_path.read_text(), self.err_path.read_text()


def start_run(config: Path) -> Job:
    """``lakehouse --conf CONFIG run`` (continuous) in a process group of its own, returned
    once its queries have started (their checkpoints folder exists). Its output goes to
    ``run-<n>.out`` and ``.err`` beside the config."""
    import time

    from lakehouse.config import load_config
    from lakehouse.io.storage import is_dir
    checkpoints = load_config(config).warehouse.checkpoints
    argv = [sys.executable, "-m", "lakehouse.cli", "--conf", str(config), "run"]
    runs = len(list(config.parent.glob("run-*.out")))
    proc = Job(argv, config.parent / f"run-{runs + 1}")
    deadline = time.monotonic() + 300
    while not is_dir(checkpoints):
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"lakehouse run did not start\n{out[-2000:]}\n{err[-3000:]}")
        time.sleep(0.5)
    return proc


def run_pipelines(config: Path, spark: SparkSession,
                  tables: list[str] | None = None) -> subprocess.CompletedProcess:
    """What ``lakehouse --conf CONFIG run --until-idle [--table ...]`` does, on the suite's
    warm Spark session, for a test whose subject is what the pipelines write rather than
    the command's process (a cold JVM costs ~30 s a run, most of it compiling Spark's
    code). Returns what the command would: its exit code, the run's progress lines, and
    ``error: ...`` for a coded error. The command's own process, its summary and its
    Spark session run in the CLI and chaos tests."""
    from lakehouse import graph
    from lakehouse.config import load_config
    from lakehouse.errors import LakehouseError
    from lakehouse.runner import run
    lines: list[str] = []
    argv = ["run", "--until-idle", *[a for t in tables or [] for a in ("--table", t)]]
    try:
        run(graph.build(load_config(config)), until_idle=True, tables=tables, spark=spark,
            printer=lines.append)
    except LakehouseError as exc:
        return subprocess.CompletedProcess(argv, exc.exit_code, "\n".join(lines),
                                           f"error: {exc}")
    return subprocess.CompletedProcess(argv, 0, "\n".join(lines), "")


def replay_here(config: Path, spark: SparkSession, table: str,
                into: str | None = None) -> subprocess.CompletedProcess:
    """What ``lakehouse --conf CONFIG replay TABLE [--into INTO] --yes`` does for a silver or
    gold table, on the suite's warm Spark session (as ``run_pipelines`` for ``run``): the
    same replay under the same table lock. Returns the command's exit code, the replay's
    lines and ``error: ...`` for a coded error. The command's own process (its
    confirmation, its hints, a kill half way) runs in tests/e2e/test_replay_e2e.py."""
    from lakehouse import graph
    from lakehouse.audit.replay import replay_gold, replay_silver
    from lakehouse.config import load_config
    from lakehouse.errors import LakehouseError
    from lakehouse.io.locks import table_locks
    from lakehouse.registry import GoldTable
    cfg = load_config(config)
    pipeline = graph.build(cfg)
    lines: list[str] = []
    argv = ["replay", table, *(["--into", into] if into else []), "--yes"]
    try:
        definition = pipeline.query(table).definition
        with table_locks(cfg.warehouse.root, [] if into else [table], "lakehouse replay"):
            if isinstance(definition, GoldTable):
                report = replay_gold(spark, pipeline, definition, into, lines.append)
            else:
                report = replay_silver(spark, pipeline, definition, None, into, lines.append)
        lines.append(report.describe())
    except LakehouseError as exc:
        return subprocess.CompletedProcess(argv, exc.exit_code, "\n".join(lines),
                                           f"error: {exc}")
    return subprocess.CompletedProcess(argv, 0, "\n".join(lines), "")


def quarantine_replay_here(config: Path, spark: SparkSession, table: str,
                           rules: list[str]) -> subprocess.CompletedProcess:
    """What ``lakehouse --conf CONFIG quarantine replay TABLE --rule R...`` does, on the
    suite's warm Spark session; returns as ``replay_here`` does. The command's own process
    runs in tests/e2e/test_silver_e2e.py."""
    from lakehouse import graph
    from lakehouse.audit import quarantine
    from lakehouse.config import load_config
    from lakehouse.errors import LakehouseError
    cfg = load_config(config)
    lines: list[str] = []
    argv = ["quarantine", "replay", table, *[a for r in rules for a in ("--rule", r)]]
    try:
        pipeline = graph.build(cfg)
        report = quarantine.replay(pipeline, quarantine.find_table(pipeline, table),
                                   quarantine.Selection(tuple(rules), (), (), False), spark,
                                   printer=lines.append)
        lines.append(report.describe())
    except LakehouseError as exc:
        return subprocess.CompletedProcess(argv, exc.exit_code, "\n".join(lines),
                                           f"error: {exc}")
    return subprocess.CompletedProcess(argv, 0, "\n".join(lines), "")


def assert_chains_verified(config: Path, spark: SparkSession) -> dict[str, Integrity]:
    """What ``lakehouse audit verify`` checks (every table's chain, recomputed from its log
    and data files), on the suite's Spark session; each table's result by name."""
    from lakehouse.audit.integrity import verify
    from lakehouse.config import load_config
    checked = verify(load_config(config), spark=spark)
    broken = [f"{c.table}: {c.broken.describe()}" for c in checked if c.broken]
    assert not broken, broken
    return {c.table: c for c in checked}


def assert_gold_verified(config: Path, spark: SparkSession,
                         tables: list[str] | None = None) -> None:
    """What ``lakehouse verify gold`` checks (each gold table equals its recomputation from
    silver), run on the suite's Spark session: a warm JVM, not a new one per check. The
    command itself runs in tests/e2e/test_gold_e2e.py."""
    from lakehouse import graph
    from lakehouse.audit.verify import verify
    from lakehouse.config import load_config
    from lakehouse.registry import GoldTable
    pipeline = graph.build(load_config(config))
    chosen = pipeline.select(tables) if tables else pipeline.layer(graph.Layer.GOLD)
    for query in chosen:
        if isinstance(query.definition, GoldTable):
            check = verify(spark, pipeline, query.definition)
            assert check.equal, check.describe()


def _without_frames(text: str, limit: int = 30000) -> str:
    kept = [line for line in text.splitlines() if not line.lstrip().startswith(("at ", "..."))]
    return "\n".join(kept)[-limit:]


def _dump_java_threads(group: int) -> None:
    """SIGQUIT to every JVM of the process group: each prints its threads to its stdout
    (the group's captured output)."""
    import time
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = Path(stat.parent, "comm").read_text().strip()
        except OSError:
            continue
        if int(fields[2]) == group and comm == "java":
            os.kill(int(stat.parent.name), signal.SIGQUIT)
    time.sleep(3)


def write_config(path: Path, bootstrap: str, warehouse: Path | str, *, embedded: bool = False,
                 broker_dir: Path | None = None, silver: dict | None = None,
                 kafka: dict | None = None, spark: dict | None = None,
                 observe: dict | None = None, topics: dict[str, str] | None = None,
                 storage: dict | None = None, **streaming: object) -> Path:
    """A config file for a test: its own warehouse (a folder, or ``s3a://...`` on the
    ``storage`` store), the given broker; ``topics``: source -> the topic this test reads
    it from instead of its contract's."""
    doc = {
        "project": "test",
        "kafka": {"bootstrap_servers": bootstrap,
                  "embedded": {"enabled": embedded,
                               **({"data_dir": str(broker_dir)} if broker_dir else {})},
                  **(kafka or {})},
        "warehouse": {"root": str(warehouse)},
        "spark": {"master": "local[2]", "shuffle_partitions": 2, **(spark or {})},
        "streaming": {"trigger_seconds": 0.5, "max_offsets_per_trigger": 50000, **streaming},
        "silver": silver or {},
        "privacy": {"dev_key": "tests-only-not-a-secret"},
        "observe": {"flush_seconds": 1, **(observe or {})},
        "sources": {name: {"topic": topic} for name, topic in (topics or {}).items()},
        **({"storage": storage} if storage else {}),
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Apache Kafka broker process (KRaft, single node) on a free port."""
    from lakehouse.servers.broker import EmbeddedBroker
    b = EmbeddedBroker(f"127.0.0.1:{free_port()}", str(tmp_path_factory.mktemp("broker")))
    b.up()
    yield b.bootstrap
    b.down()


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Apicurio Registry process on a free port; its Confluent-compatible API's URL."""
    from lakehouse.servers.apicurio import EmbeddedRegistry
    registry = EmbeddedRegistry("127.0.0.1", free_port(), str(tmp_path_factory.mktemp("reg")))
    registry.up()
    yield registry.url
    registry.down()


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The one SparkSession of the test run."""
    from lakehouse.config import parse_config
    from lakehouse.spark import build_session
    config = parse_config({
        "project": "test", "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "warehouse": {"root": str(tmp_path_factory.mktemp("wh"))},
        "spark": {"master": "local[2]", "shuffle_partitions": 2}})
    session = build_session(config)
    yield session
    session.stop()


S3_KEY, S3_SECRET = "tests-key", "tests-only-not-a-secret"


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory, spark: SparkSession
                 ) -> Iterator[EmbeddedStore]:
    """A real SeaweedFS process serving bucket ``lake``, which the suite's Spark session
    reaches as ``build_session`` would (``store_settings`` gives a config's section)."""
    from lakehouse.servers.seaweedfs import EmbeddedStore
    store = EmbeddedStore("127.0.0.1", free_port(), str(tmp_path_factory.mktemp("storage")),
                          "lake", "us-east-1", S3_KEY, S3_SECRET)
    store.up()
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    for key, value in store.store().hadoop_conf(store.bucket).items():
        hadoop.set(key, value)
    yield store
    store.down()


def store_settings(store: EmbeddedStore) -> dict:
    """A config's ``storage`` section for ``store``, a store it does not start itself."""
    return {"endpoint": store.endpoint, "embedded": {"enabled": False},
            "credentials": {"access_key": S3_KEY, "secret_key": S3_SECRET}}
