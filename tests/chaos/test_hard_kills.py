"""SIGKILL of the running job at random moments while events are still being produced,
restarting it each time (6 kills; ``--chaos-full``: 30). Then one run catches up and the
independent checker finds every record in its one place and gold exact."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.generator import generate
from lakehouse.io.kafka_producer import produce
from tests.chaos.checker import check
from tests.conftest import run_pipelines, start_run, write_config
from tests.shapes import shape

pytestmark = pytest.mark.integration


def test_the_job_survives_hard_kills_while_events_arrive(
        broker: str, tmp_path: Path, full: bool, spark: SparkSession) -> None:
    topic = f"orders.kills.{tmp_path.name}"
    warehouse = tmp_path / "warehouse"
    config = write_config(tmp_path / "conf.yaml", broker, warehouse, topics={"orders": topic})
    kills = 30 if full else 6
    rng = random.Random(kills)
    producing = threading.Event()
    producing.set()
    sent: list[int] = []

    def producer() -> None:  # 100 events (faults included) every second until told to stop
        seed = 0
        while producing.is_set():
            sent.append(produce(broker, topic, generate(shape("orders"), 100, seed=seed, faults=0.2)))
            seed += 1
            time.sleep(1)

    thread = threading.Thread(target=producer, daemon=True)
    thread.start()
    try:
        for n in range(kills):
            job = start_run(config)
            time.sleep(rng.uniform(6, 18))  # a random moment: starting, mid-batch, idle
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate(timeout=60)
            print(f"kill {n + 1}/{kills} after the job ran a while (exit {job.returncode})")
    finally:
        producing.clear()
        thread.join(timeout=60)
    done = run_pipelines(config, spark)  # the catch-up after the kills
    assert done.returncode == 0, done.stderr[-3000:]
    verdict = check(config, broker, topic, spark)
    assert verdict.produced == sum(sent) and verdict.silver > 0
    print(f"{kills} kills survived: {verdict.describe()}")
