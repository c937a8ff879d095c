"""The same jobs on a Spark cluster: the ``pipelines/`` entry points, spark-submitted to a
Spark standalone cluster (a master and two workers started from the pyspark
installation), build exactly the tables local mode builds from the same Kafka events.

One cluster serves the module (``lakehouse cluster up`` / ``down``); both warehouses read
the same topics of their own on the session's broker: warehouse A, on the object store
(a real SeaweedFS), by the three layer jobs on the cluster (``lakehouse cluster submit``:
spark-submit with the fetched jars in ``--jars`` and the project's code in
``--py-files``), whose executors share nothing on disk with the driver or each other;
warehouse B, on local disk, by ``lakehouse run`` in local mode.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from pyspark.sql import SparkSession

from lakehouse.catalog import table_names
from lakehouse.config import Config, load_config
from lakehouse.generator import generate
from lakehouse.io.delta_log import open_table
from lakehouse.io.kafka_admin import TopicSpec, ensure_topics
from lakehouse.io.kafka_producer import produce
from lakehouse.io.storage import is_dir
from lakehouse.servers.cluster import LocalCluster, cluster_data_dir, master_state
from lakehouse.servers.seaweedfs import EmbeddedStore
from tests.conftest import ROOT, lakehouse, run_pipelines, store_settings
from tests.shapes import shape

pytestmark = pytest.mark.integration

EVENTS = 300
SEED = 14
IGNORED = frozenset({
    "ingested_at", "ingest_date",        # bronze: when this run landed the record
    "_ingested_at", "_bronze_version",   # silver and quarantine: which bronze commit held it
    "batch_id", "quarantined_at",        # quarantine: which silver batch, when
    "updated_at",                        # gold: when the MERGE wrote the row
})
"""Columns that say when or in which batch a run wrote a row, not what the row holds."""


@dataclass(frozen=True)
class World:
    """The cluster, the two configs (same topics, own warehouses) and the runs' output."""

    cluster: LocalCluster
    on_cluster: Path
    local: Path
    up_stdout: str


def write_config(path: Path, bootstrap: str, warehouse: Path | str, topics: dict[str, str],
                 storage: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump({
        **({"storage": storage} if storage else {}),
        "project": "cluster",
        "kafka": {"bootstrap_servers": bootstrap, "embedded": {"enabled": False}},
        "warehouse": {"root": str(warehouse)},
        "spark": {"master": "local[2]", "shuffle_partitions": 2},
        "streaming": {"trigger_seconds": 0.5, "max_offsets_per_trigger": 50000},
        "privacy": {"dev_key": "tests-only-not-a-secret"},
        "sources": {"orders": {"topic": topics["orders"]},
                    "clickstream": {"topic": topics["clickstream"]}},
    }))
    return path


def processes_in(folder: Path) -> list[str]:
    """Processes working in ``folder`` or below it (the cluster's JVMs, its executors
    and their Python workers)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(proc / "cwd")
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
        except OSError:
            continue
        if cwd == str(folder) or cwd.startswith(f"{folder}/"):
            found.append(f"{proc.name}: {cmd}")
    return found


@pytest.fixture(scope="module")
def world(broker: str, object_store: EmbeddedStore,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("cluster")
    run = uuid.uuid4().hex[:8]
    topics = {"orders": f"cluster.{run}.orders", "clickstream": f"cluster.{run}.clickstream"}
    on_cluster = write_config(base / "cluster.yaml", broker,
                              f"s3a://{object_store.bucket}/cluster-{run}", topics,
                              store_settings(object_store))
    local = write_config(base / "local.yaml", broker, base / "warehouse-local", topics)
    ensure_topics(broker, [TopicSpec(topics["orders"], 6), TopicSpec(topics["clickstream"], 3)])
    for source, topic in topics.items():
        assert produce(broker, topic, generate(shape(source), EVENTS, SEED, 0.1)) == EVENTS
    cluster = LocalCluster(cluster_data_dir(load_config(on_cluster)))
    up = lakehouse(on_cluster, "cluster", "up", timeout=300)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        yield World(cluster, on_cluster, local, up.stdout)
    finally:
        down = lakehouse(on_cluster, "cluster", "down", timeout=120)
        assert down.returncode == 0, down.stderr[-3000:]
    assert "cluster stopped" in down.stdout
    assert processes_in(cluster.data_dir) == []
    # Beside a warehouse on the store, the cluster's folder is the project's .lakehouse/.
    assert cluster.data_dir.is_relative_to(ROOT / ".lakehouse")
    shutil.rmtree(cluster.data_dir)


def test_cluster_up_starts_a_master_and_two_alive_workers(world: World) -> None:
    assert "master URL: spark://127.0.0.1:" in world.up_stdout
    assert "web UI: http://127.0.0.1:" in world.up_stdout
    status = lakehouse(world.on_cluster, "cluster", "status", timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "2/2 workers ALIVE" in status.stdout
    again = lakehouse(world.on_cluster, "cluster", "up", timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert world.cluster.status().master_url in again.stdout, "up twice is the same cluster"


@pytest.mark.timeout(1500)
def test_jobs_on_the_cluster_build_the_same_tables_as_local_mode(world: World,
                                                                 spark: SparkSession) -> None:
    before = set(world.cluster.status().completed_apps)
    # Local mode (the reference the cluster's tables must equal) runs meanwhile, on the
    # suite's warm local[2] session (run_pipelines: what `lakehouse run --until-idle`
    # does, without a cold JVM competing with the cluster's for the two cores); the
    # cluster's submission spends much of its time waiting (JVM start-up, scheduling).
    with ThreadPoolExecutor(1) as pool:
        cluster_run = pool.submit(lakehouse, world.on_cluster, "cluster", "submit", "bronze",
                                  "silver", "gold", timeout=1200)
        local = run_pipelines(world.local, spark)
        submitted = cluster_run.result()
    assert submitted.returncode == 0, submitted.stdout[-5000:] + submitted.stderr[-5000:]
    for layer in ("bronze", "silver", "gold"):
        assert f"{layer} job finished in" in submitted.stdout
    assert "[gold.sessions_daily] batch" in submitted.stdout
    assert local.returncode == 0, local.stdout[-5000:] + local.stderr[-5000:]

    # The work ran on the cluster: three applications finished there, each with an
    # executor on both workers that fetched the jars and the code from the driver and
    # ran tasks.
    state = master_state(world.cluster.status().web_ui)
    assert state is not None
    apps = {a["id"]: a for a in state["completedapps"]}
    ran = sorted(set(apps) - before)
    assert len(ran) == 3, state["completedapps"]
    for app in ran:
        assert apps[app]["state"] == "FINISHED"
        for n in (1, 2):
            executors = list((world.cluster.work_dir(n) / app).iterdir())
            assert len(executors) == 1, (app, n)
            assert (executors[0] / "delta-spark_2.13-4.4.0.jar").is_file()
            assert (executors[0] / "lakehouse-py.zip").is_file()
            assert "Running task" in (executors[0] / "stderr").read_text()

    # Exactly the same tables, row for row.
    cluster_conf, local_conf = load_config(world.on_cluster), load_config(world.local)
    names = table_names(cluster_conf)
    assert sorted(names) == sorted(table_names(local_conf))
    assert {n.split(".")[0] for n in names} == {"bronze", "silver", "gold", "_system"}
    for name in names:
        if name in ("silver._batches", "silver._quality") or name.startswith("_system."):
            continue  # per batch (the event log: per run); compared in total below
        on_cluster = rows(cluster_conf, name)
        assert on_cluster, name
        assert on_cluster == rows(local_conf, name), name
    for name, keys, measures in (
            ("silver._batches", ("table",),
             ("bronze_rows", "silver_rows", "quarantined_rows", "duplicates_in_batch",
              "duplicates_in_silver")),
            ("silver._quality", ("table", "rule"), ("element_count", "unexpected_count"))):
        assert totals(cluster_conf, name, keys, measures) == \
            totals(local_conf, name, keys, measures), name
    # The drivers on the cluster kept the event log: a row per batch of every pipeline.
    logged = table(cluster_conf, "_system.events").select(["pipeline", "input_rows"])
    by = logged.group_by("pipeline").aggregate([("input_rows", "sum")]).to_pylist()
    assert {r["pipeline"] for r in by} == {n for n in names if not n.startswith("_system.")
                                           and not n.split(".")[1].startswith("_")
                                           and not n.endswith("_quarantine")}
    assert {r["pipeline"]: r["input_rows_sum"] for r in by}["bronze.orders"] == EVENTS
    bronze = rows(cluster_conf, "bronze.orders")
    assert len(bronze) == EVENTS
    assert rows(cluster_conf, "silver.orders_quarantine"), "faults were routed"
    # Nothing of the cluster's warehouse on local disk: every table and checkpoint is on
    # the store; the executors' folders hold only what they fetched and their logs.
    local = [p for p in Path(world.cluster.data_dir).rglob("*")
             if p.name in ("_delta_log", "_checkpoints") or p.suffix == ".parquet"]
    assert local == []
    assert is_dir(cluster_conf.warehouse.checkpoint_uri("gold.sessions_daily"))


def table(config: Config, name: str) -> pa.Table:
    """A table as delta-rs reads it, wherever the warehouse is."""
    dt = open_table(config.warehouse.table_uri(*name.split(".")),
                    config.warehouse.storage_options)
    assert dt is not None, name
    return dt.to_pyarrow_table()


def rows(config: Config, name: str) -> list[str]:
    """The table's rows without the columns that say when they were written, sorted."""
    data = table(config, name)
    kept = [c for c in data.column_names if c not in IGNORED]
    return sorted(repr(r) for r in data.select(kept).to_pylist())


def totals(config: Config, name: str, keys: tuple[str, ...],
           measures: tuple[str, ...]) -> dict[tuple[Any, ...], list[int]]:
    """Per key, the sums of the measures over every batch."""
    out: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(measures))
    for row in table(config, name).to_pylist():
        sums = out[tuple(row[k] for k in keys)]
        for i, m in enumerate(measures):
            sums[i] += row[m]
    return dict(out)
