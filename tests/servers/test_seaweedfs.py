"""The embedded object store: a real SeaweedFS process (``weed mini``) that belongs to its
data directory, creates the warehouse's bucket, takes only its key, keeps its objects
across a restart, and refuses a port another process holds."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from deltalake import DeltaTable, write_deltalake

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.object_store import S3Store
from lakehouse.servers.seaweedfs import EmbeddedStore
from tests.conftest import free_port, lakehouse, write_config

KEY, SECRET = "tests-key", "tests-only-not-a-secret"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    store = EmbeddedStore("127.0.0.1", free_port(), str(tmp_path / "storage"), "lake",
                          "us-east-1", KEY, SECRET)
    yield store
    store.down()


def delta_options(store: EmbeddedStore, key: str = KEY, secret: str = SECRET) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": store.endpoint, "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_ALLOW_HTTP": "true", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false"}


def test_the_store_serves_its_bucket_to_its_key_and_keeps_objects_across_a_restart(
        store: EmbeddedStore) -> None:
    assert not store.status().running
    status = store.up()
    assert status.running and status.answering and "bucket lake" in status.describe()
    assert store.store().has_bucket("lake") and not store.store().has_bucket("other")
    # delta-rs commits with a conditional put, which SeaweedFS honours: two appends,
    # two versions, no unsafe-rename switch.
    uri = "s3://lake/t"
    write_deltalake(uri, pa.table({"x": [1, 2]}), storage_options=delta_options(store))
    write_deltalake(uri, pa.table({"x": [3]}), mode="append",
                    storage_options=delta_options(store))
    assert store.up().pid == status.pid  # up on a running store changes nothing
    assert store.down() is True and not store.status().running
    assert not store.store().has_bucket("lake")  # nothing answers now
    store.up()
    table = DeltaTable(uri, storage_options=delta_options(store))
    assert table.version() == 1
    assert sorted(table.to_pyarrow_table().column("x").to_pylist()) == [1, 2, 3]
    wrong = S3Store(store.endpoint, "us-east-1", KEY, "not-the-secret")
    assert not wrong.has_bucket("lake")
    with pytest.raises(OSError):
        DeltaTable(uri, storage_options=delta_options(store, secret="not-the-secret"))


def test_a_port_held_by_another_process_is_refused(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        store = EmbeddedStore("127.0.0.1", port, str(tmp_path), "lake", "us-east-1", KEY,
                              SECRET)
        with pytest.raises(LakehouseError) as info:
            store.up()
        assert info.value.code is ErrorCode.STORAGE_START_FAILED
        assert f"port {port} is held" in info.value.message
        status = store.status()
        assert not status.running and status.port_taken and "held" in status.describe()
    assert store.down() is False


def test_storage_commands_belong_to_their_warehouse(tmp_path: Path) -> None:
    port = free_port()

    def config(name: str, **storage: object) -> Path:
        path = write_config(tmp_path / f"{name}.yaml", "127.0.0.1:1", tmp_path / name)
        doc = yaml.safe_load(path.read_text())
        doc["storage"] = {"endpoint": f"http://127.0.0.1:{port}",
                          "credentials": {"access_key": KEY, "secret_key": SECRET}, **storage}
        path.write_text(yaml.safe_dump(doc))
        return path

    mine, other = config("mine"), config("other")
    try:
        done = lakehouse(mine, "storage", "up")
        assert done.returncode == 0, done.stderr
        assert f"S3 endpoint: http://127.0.0.1:{port}, bucket: lakehouse" in done.stdout
        assert (tmp_path / "mine" / "_storage" / "storage.json").is_file()
        assert lakehouse(mine, "storage", "status").returncode == 0
        refused = lakehouse(other, "storage", "up")  # another warehouse, the same port
        assert refused.returncode != 0 and "LH-STORAGE-001" in refused.stderr
        assert lakehouse(other, "storage", "status").returncode == 3
    finally:
        assert lakehouse(mine, "storage", "down").stdout.strip() == "storage stopped"
    assert lakehouse(mine, "storage", "status").returncode == 3
    external = config("external", embedded={"enabled": False})
    done = lakehouse(external, "storage", "up")
    assert done.returncode != 0 and "LH-STORAGE-002" in done.stderr
    keyless = config("keyless", credentials={})
    done = lakehouse(keyless, "storage", "up")
    assert done.returncode != 0 and "LH-CONF-004" in done.stderr and "access_key" in done.stderr
