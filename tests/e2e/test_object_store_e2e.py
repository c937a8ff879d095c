"""The warehouse on an S3-compatible store (a real SeaweedFS process): the pipeline's own
processes write every table, checkpoint and the event log there through hard kills; the
independent checker finds every record in its one place; gold verifies; and the no-JVM
readers (delta-rs, DuckDB, ``lakehouse query``) agree with Spark on every table."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.catalog import table_names, table_uri
from lakehouse.config import load_config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.generator import generate
from lakehouse.io.kafka_producer import produce
from lakehouse.io.storage import is_dir, join
from lakehouse.query import run_query
from lakehouse.servers.seaweedfs import EmbeddedStore
from tests.chaos.checker import check
from tests.conftest import lakehouse, run_pipelines, start_run, store_settings, write_config
from tests.shapes import shape

pytestmark = pytest.mark.integration


def test_the_pipeline_on_the_object_store_through_hard_kills(
        broker: str, object_store: EmbeddedStore, spark: SparkSession, tmp_path: Path) -> None:
    topic = f"orders.s3.{tmp_path.name}"
    warehouse = f"s3a://{object_store.bucket}/{tmp_path.name}"
    config = write_config(tmp_path / "conf.yaml", broker, warehouse, topics={"orders": topic},
                          storage=store_settings(object_store))
    rng = random.Random(2)
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
        for n in range(2):
            job = start_run(config)
            time.sleep(rng.uniform(15, 35))  # starting, mid-batch, idle
            os.killpg(job.pid, signal.SIGKILL)
            out, _ = job.communicate(timeout=60)
            assert n or f"object store at {object_store.endpoint}" in out, out[-2000:]
    finally:
        producing.clear()
        thread.join(timeout=60)
    done = run_pipelines(config, spark)
    assert done.returncode == 0, done.stderr[-3000:]
    verdict = check(config, broker, topic, spark)
    assert verdict.produced == sum(sent) and verdict.silver > 0 and verdict.quarantined > 0
    print(f"on the object store, 2 kills survived: {verdict.describe()}")

    cfg = load_config(config)
    assert not list(tmp_path.glob("**/_delta_log")), "nothing of the warehouse on local disk"
    assert is_dir(join(warehouse, "_checkpoints", "bronze.orders", "offsets"))
    assert is_dir(join(warehouse, "_system", "events", "_delta_log")), "the event log is there"
    for name in table_names(cfg):  # every reader sees the same rows as Spark
        by_spark = spark.read.format("delta").load(table_uri(cfg, name))
        counted = run_query(cfg, f"SELECT count(*) AS n FROM {name}").column("n")[0].as_py()
        assert counted == by_spark.count(), name
    gold = "gold.revenue_by_category_5m"
    columns = "window_start, category, orders, net_revenue"
    by_spark = {tuple(r) for r in spark.read.format("delta").load(table_uri(cfg, gold))
                .selectExpr(*columns.split(", ")).collect()}
    listed = lakehouse(config, "query", "--format", "json",
                       f"SELECT {columns} FROM {gold}", timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == len(by_spark) > 0
    assert sum(r["orders"] for r in rows) == sum(r[2] for r in by_spark)
    # The auditor's and the operator's readers, from the event log and the commits there.
    explained = lakehouse(config, "explain", gold, "--format", "json", timeout=120)
    assert explained.returncode == 0, explained.stderr[-2000:]
    assert topic in explained.stdout, "traced back to the Kafka offsets"
    for args in (["status"], ["report", "--output", str(tmp_path / "report.html")]):
        done = lakehouse(config, *args, timeout=120)
        assert done.returncode == 0, (args, done.stderr[-2000:])
    assert "bronze.orders" in (tmp_path / "report.html").read_text()


def test_the_store_stopped_mid_run_then_an_exact_resume(
        broker: str, spark: SparkSession, tmp_path: Path) -> None:
    from tests.conftest import S3_KEY, S3_SECRET, free_port
    topic = f"orders.stopped.{tmp_path.name}"
    endpoint = f"http://127.0.0.1:{free_port()}"
    config = write_config(
        tmp_path / "conf.yaml", broker, "s3a://stopped/shop", topics={"orders": topic},
        storage={"endpoint": endpoint, "embedded": {"data_dir": str(tmp_path / "objects")},
                 "credentials": {"access_key": S3_KEY, "secret_key": S3_SECRET}})
    up = lakehouse(config, "storage", "up", timeout=120)
    assert up.returncode == 0 and endpoint in up.stdout, up.stderr
    sent = produce(broker, topic, generate(shape("orders"), 1000, seed=1, faults=0.2))
    job = start_run(config)
    try:
        cfg = load_config(config)
        landed = join(cfg.warehouse.root, "bronze", "orders", "_delta_log")
        deadline = time.monotonic() + 300
        while not is_dir(landed):
            assert time.monotonic() < deadline and job.poll() is None, "bronze never landed"
            time.sleep(1)
        sent += produce(broker, topic, generate(shape("orders"), 1000, seed=2, faults=0.2))
        down = lakehouse(config, "storage", "down", timeout=120)
        assert down.returncode == 0, down.stderr
        job.wait(timeout=600)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    out, err = job.communicate()
    assert job.returncode == 75 and "[LH-STORAGE-003]" in err, (out[-3000:], err[-3000:])
    print(err.strip().splitlines()[-2:])

    refused = lakehouse(config, "query", "SELECT count(*) FROM silver.orders", timeout=120)
    assert refused.returncode == 75 and "[LH-STORAGE-003]" in refused.stderr
    assert lakehouse(config, "storage", "up", timeout=120).returncode == 0
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    for key, value in cfg.storage.store.hadoop_conf("stopped").items():
        hadoop.set(key, value)
    try:
        done = run_pipelines(config, spark)
        assert done.returncode == 0, done.stderr[-3000:]
        verdict = check(config, broker, topic, spark)
    finally:
        lakehouse(config, "storage", "down", timeout=120)
    assert verdict.produced == sent
    print(f"store stopped mid-run, resumed: {verdict.describe()}")


def test_time_travel_restore_replay_vacuum_and_forget_on_the_object_store(
        broker: str, object_store: EmbeddedStore, spark: SparkSession, tmp_path: Path) -> None:
    from lakehouse import graph
    from lakehouse.audit.forget import forget
    from lakehouse.audit.retention import restore, vacuum
    from lakehouse.audit.timetravel import diff
    from lakehouse.io.storage import filesystem
    from lakehouse.layers.ledger import accounting
    from lakehouse.privacy import pseudonym
    from tests.conftest import assert_gold_verified, replay_here
    from tests.e2e.gold_world import BASE, World, click, order
    table = "gold.revenue_by_category_5m"
    w = World(broker, tmp_path, warehouse=f"s3a://{object_store.bucket}/{tmp_path.name}",
              storage=store_settings(object_store))
    w.send([order(n, BASE) for n in range(20)], [click(n, "c-1", "s-1", BASE) for n in range(4)])
    assert (run := w.run_here(spark)).returncode == 0, run.stderr[-3000:]
    config = load_config(w.config)
    pipeline = graph.build(config)
    uri, options = table_uri(config, table), config.warehouse.storage_options
    first = _version(uri, options)
    w.send([order(n, BASE) for n in range(20, 30)], [])
    assert (run := w.run_here(spark)).returncode == 0, run.stderr[-3000:]
    latest = _version(uri, options)
    assert latest > first

    # Time travel: the earlier gold, by version, from the no-JVM reader and the CLI.
    sql = f"SELECT sum(orders) AS n FROM {table}"
    assert run_query(config, sql, first).column("n")[0].as_py() < \
        run_query(config, sql).column("n")[0].as_py()
    listed = lakehouse(w.config, "history", table, "--format", "json", timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["version"] == latest

    # Restore to the first version and back; a replay from silver; gold still verifies.
    assert restore(config, table, first, "s3 check", spark=spark).version == latest + 1
    back, _, _ = diff(pipeline, table, first, latest + 1)
    assert back.added.num_rows == back.removed.num_rows == back.changed.num_rows == 0
    replayed = replay_here(w.config, spark, table)
    assert replayed.returncode == 0, replayed.stderr
    assert_gold_verified(w.config, spark)

    # Vacuum: the files no retained version needs are gone from the store.
    fs, _ = filesystem(uri)
    before = run_query(config, sql).column("n")[0].as_py()
    vacuumed = vacuum(pipeline, table, 0, erasure=True, spark=spark)
    assert vacuumed.files, "the restore and the replay left files behind"
    gone = fs.get_file_info([filesystem(join(uri, f))[1] for f in vacuumed.files])
    assert all(i.type.name == "NotFound" for i in gone)
    assert run_query(config, sql).column("n")[0].as_py() == before, "the current version reads"
    with pytest.raises(LakehouseError) as vacuumed:
        run_query(config, sql, first)  # its files are gone: said so, not a storage error
    assert vacuumed.value.code is ErrorCode.TIME_VACUUMED

    # Forget: the subject is erased from every current table; the accounting still holds.
    forgotten = forget(pipeline, "c-2", printer=print, by="tests")
    assert forgotten.rows["silver.orders"] > 0
    dev_key = b"tests-only-not-a-secret"
    silver = run_query(config, "SELECT customer_id FROM silver.orders").column(0).to_pylist()
    assert pseudonym(dev_key, "c-2") not in silver and silver
    for query in pipeline.layer(graph.Layer.SILVER):
        check = accounting(pipeline, query.definition)
        assert check.holds, check.describe()
    assert_gold_verified(w.config, spark)


def _version(uri: str, options: dict[str, str]) -> int:
    from lakehouse.io.delta_log import open_table
    table = open_table(uri, options)
    assert table is not None
    return table.version()
