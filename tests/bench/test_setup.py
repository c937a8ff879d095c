"""The benchmark's own settings: the shipped defaults on its broker and warehouse."""

from __future__ import annotations

from pathlib import Path

from lakehouse.bench.setup import SOURCE, TOPIC, bench_config
from lakehouse.servers.seaweedfs import EmbeddedStore


def test_the_bench_runs_on_the_shipped_defaults_on_disk_or_on_a_store(tmp_path: Path) -> None:
    on_disk = bench_config(tmp_path, "127.0.0.1:9")
    assert on_disk.warehouse.root == str(tmp_path / "warehouse")
    assert on_disk.source(SOURCE).topic == TOPIC and on_disk.source(SOURCE).format == "json"
    assert not on_disk.kafka.embedded.enabled and on_disk.store_buckets == []
    store = EmbeddedStore("127.0.0.1", 9, str(tmp_path / "s"), "bench", "us-east-1", "k", "s")
    on_store = bench_config(tmp_path, "127.0.0.1:9", store)
    assert on_store.warehouse.root == "s3a://bench/warehouse"
    assert on_store.store_buckets == ["bench"] and not on_store.storage.embedded.enabled
    assert on_store.storage.endpoint == store.endpoint
    assert on_store.warehouse.storage_options["AWS_ENDPOINT_URL"] == store.endpoint


def test_the_digests_cost_is_measured_on_tables_of_its_own(tmp_path: Path) -> None:
    on = bench_config(tmp_path, "127.0.0.1:9")
    off = bench_config(tmp_path, "127.0.0.1:9", warehouse="digests_off", digests=False)
    assert on.retention.tamper_evidence and not off.retention.tamper_evidence
    assert off.warehouse.root == str(tmp_path / "digests_off")
    assert off.warehouse.checkpoints != on.warehouse.checkpoints
