"""The broker stopped under a running job: the job says so, waits, and goes on without
loss when it is back; gone longer than the configured timeout, the job stops with
LH-KAFKA-004 and exit code 75, and the next run catches up."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.generator import generate
from lakehouse.io.kafka_producer import produce
from lakehouse.servers.broker import EmbeddedBroker
from tests.chaos.checker import check
from tests.conftest import free_port, run_pipelines, start_run, write_config
from tests.shapes import shape

pytestmark = pytest.mark.integration
TOPIC = "shop.orders.v1"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own, to stop and start."""
    broker = EmbeddedBroker(f"127.0.0.1:{free_port()}", str(tmp_path / "broker"))
    broker.up()
    yield broker
    broker.down()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout:.0f}s for {what}"
        time.sleep(1)


def ledgered(warehouse: Path) -> int:
    """Bronze records silver has routed (its ledger)."""
    path = warehouse / "silver" / "_batches"
    if not (path / "_delta_log").is_dir():
        return 0
    return sum(DeltaTable(str(path)).to_pyarrow_table(columns=["bronze_rows"])
               .column("bronze_rows").to_pylist())


def test_a_job_waits_out_a_broker_outage_and_stops_after_its_timeout(
        own_broker: EmbeddedBroker, tmp_path: Path, spark: SparkSession) -> None:
    warehouse = tmp_path / "warehouse"
    config = write_config(tmp_path / "conf.yaml", own_broker.bootstrap, warehouse,
                          kafka={"unavailable_timeout_seconds": 30})
    produce(own_broker.bootstrap, TOPIC, generate(shape("orders"), 400, seed=1, faults=0.2))
    with start_run(config) as job:
        wait_for(lambda: ledgered(warehouse) == 400, "the first records in silver")
        own_broker.down()  # a short outage (stop, 2 s, start: well inside the 30 s): the job waits
        time.sleep(2)
        own_broker.up()
        produce(own_broker.bootstrap, TOPIC, generate(shape("orders"), 400, seed=2, faults=0.2))
        wait_for(lambda: ledgered(warehouse) == 800, "the records produced after the outage")
        own_broker.down()  # and one longer than the timeout: the job stops
        out, err = job.communicate(timeout=300)
    assert job.returncode == 75, out[-3000:] + err[-3000:]
    assert "is not answering" in out and "answers again after" in out
    assert "LH-KAFKA-004" in err and "kafka.unavailable_timeout_seconds" in err
    assert "Traceback" not in err

    own_broker.up()  # the next run catches up with what was produced meanwhile
    produce(own_broker.bootstrap, TOPIC, generate(shape("orders"), 300, seed=3, faults=0.2))
    again = run_pipelines(config, spark)
    assert again.returncode == 0, again.stderr[-3000:]
    verdict = check(config, own_broker.bootstrap, TOPIC, spark)
    assert verdict.produced == 1100
    print(verdict.describe())
