"""Soak: the job runs while events arrive at a steady rate (200/s for 1 minute;
``--chaos-full``: 20 minutes), sampled every 5 s: memory of the driver's JVM and Python
and of the Python workers, the JVM's open files, and consumer lag (what the broker holds
minus what bronze holds). The driver heap is held to 1 GB, so a leak fails the run (out of
memory) well inside 20 minutes instead of hiding in a large heap.

The run must end with Python memory and open files flat, lag back to zero, the job's
Prometheus endpoint counting every record bronze landed, and the independent checker's
verdict: every record in its one place, gold exact."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from pyspark.sql import SparkSession

from lakehouse.generator import generate
from lakehouse.io.delta_log import max_kafka_offsets
from lakehouse.io.kafka_producer import produce
from tests.chaos.checker import check
from tests.conftest import free_port, run_pipelines, start_run, write_config
from tests.shapes import shape

pytestmark = pytest.mark.integration
RATE = 200  # events per second


@dataclass(frozen=True)
class Sample:
    at: float
    jvm_mb: float
    python_mb: float
    workers_mb: float
    open_files: int
    lag: int


def _tree(root: int) -> list[tuple[int, str, list[str]]]:
    """(pid, comm, argv) of ``root`` and every live process below it (Spark's Python
    workers run in process groups of their own, under the JVM)."""
    procs: dict[int, tuple[int, str, list[str]]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = (stat.parent / "comm").read_text().strip()
            argv = (stat.parent / "cmdline").read_bytes().decode(errors="replace").split("\0")
            procs[int(stat.parent.name)] = (int(fields[1]), comm, argv)
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            found.append((pid, procs[pid][1], procs[pid][2]))
            todo += [child for child, (parent, _, _) in procs.items() if parent == pid]
    return found


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _lag(bootstrap: str, topic: str, warehouse: Path) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "soak-lag", "log_level": 0})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
    finally:
        consumer.close()
    held = max_kafka_offsets(str(warehouse / "bronze" / "orders")).get(topic, {})
    return sum(end - held.get(str(p), 0) for p, end in ends.items())


def _scraped(port: int, deadline: float, wanted: int) -> dict[str, float]:
    """bronze.orders' samples from the job's /metrics (summed over labels), once its input
    counter reaches ``wanted`` (Spark posts a batch's progress just after the batch)."""
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = reply.read().decode()
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.labels.get("pipeline") == "bronze.orders":
                    found[s.name] = found.get(s.name, 0.0) + s.value
        if found.get("lakehouse_input_records_total", 0) >= wanted \
                or time.monotonic() > deadline:
            return found
        time.sleep(1)


def sample(job: int, started: float, bootstrap: str, topic: str, warehouse: Path) -> Sample:
    procs = _tree(job)
    jvms = [pid for pid, comm, _ in procs if comm == "java"]
    drivers = [pid for pid, _, argv in procs if "lakehouse.cli" in argv]
    workers = [pid for pid, _, argv in procs
               if {"pyspark.daemon", "pyspark.worker"} & set(argv)]
    return Sample(time.monotonic() - started,
                  sum(_rss_mb(p) for p in jvms), sum(_rss_mb(p) for p in drivers),
                  sum(_rss_mb(p) for p in workers),
                  sum(len(os.listdir(f"/proc/{p}/fd")) for p in jvms),
                  _lag(bootstrap, topic, warehouse))


@pytest.mark.timeout(2700)  # the full soak runs 20 minutes, then catches up and checks
def test_a_steady_stream_keeps_memory_and_files_flat_and_lag_returns_to_zero(
        broker: str, tmp_path: Path, full: bool, spark: SparkSession) -> None:
    topic = f"orders.soak.{tmp_path.name}"
    warehouse = tmp_path / "warehouse"
    metrics = free_port()
    config = write_config(tmp_path / "conf.yaml", broker, warehouse,
                          spark={"driver_memory": "1g"}, observe={"metrics_port": metrics},
                          topics={"orders": topic}, trigger_seconds=2)
    seconds = 1200 if full else 60
    producing = threading.Event()
    producing.set()

    def producer() -> None:  # RATE events (faults included) every second
        for second in range(seconds):
            if not producing.is_set():
                return
            began = time.monotonic()
            produce(broker, topic, generate(shape("orders"), RATE, seed=second, faults=0.1))
            time.sleep(max(0.0, 1 - (time.monotonic() - began)))

    job = start_run(config)
    thread = threading.Thread(target=producer, daemon=True)
    started = time.monotonic()
    thread.start()
    samples: list[Sample] = []

    def record(s: Sample) -> Sample:  # printed as it comes: a failed soak still shows them
        samples.append(s)
        print(f"{s.at:6.0f} {s.jvm_mb:8.0f} {s.python_mb:10.0f} {s.workers_mb:11.0f} "
              f"{s.open_files:6d} {s.lag:7d}", flush=True)
        return s

    print(f"{'s':>6} {'JVM MB':>8} {'Python MB':>10} {'workers MB':>11} {'files':>6} {'lag':>7}")
    try:
        while thread.is_alive():
            assert job.poll() is None, f"the job died: {job.communicate()[1][-3000:]}"
            record(sample(job.pid, started, broker, topic, warehouse))
            time.sleep(5)
        deadline = time.monotonic() + 180
        while record(sample(job.pid, started, broker, topic, warehouse)).lag > 0:
            assert time.monotonic() < deadline, f"lag still {samples[-1].lag} after 180 s"
            time.sleep(2)
        # The job's Prometheus endpoint agrees with the table: every record landed once.
        landed = _scraped(metrics, deadline=time.monotonic() + 60, wanted=RATE * seconds)
        assert landed["lakehouse_input_records_total"] == RATE * seconds
        assert landed["lakehouse_kafka_lag_records"] == 0
    finally:
        producing.clear()
        thread.join(timeout=60)
        os.kill(job.pid, signal.SIGINT)  # Ctrl-C: a clean stop
        try:
            job.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            raise

    warm = samples[len(samples) // 4]  # after start-up: JIT, first batches, tables created
    end = samples[-1]
    assert end.python_mb <= warm.python_mb * 1.3 + 50, "the driver's Python memory grew"
    assert end.open_files <= warm.open_files + 50, "the driver JVM's open files grew"
    assert end.lag == 0

    done = run_pipelines(config, spark)
    assert done.returncode == 0, done.stderr[-3000:]
    verdict = check(config, broker, topic, spark)
    assert verdict.produced == RATE * seconds
    print(f"soak {seconds} s at {RATE}/s: JVM {warm.jvm_mb:,.0f} -> {end.jvm_mb:,.0f} MB, "
          f"Python {warm.python_mb:,.0f} -> {end.python_mb:,.0f} MB, open files "
          f"{warm.open_files} -> {end.open_files}; {verdict.describe()}")
