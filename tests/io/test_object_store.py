"""A warehouse on an S3-compatible store: the settings each client gets from ``storage:``,
and Spark (Hadoop's S3A connector, the jars ``make setup`` fetched) and delta-rs sharing
tables and a streaming checkpoint on a real SeaweedFS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyarrow.fs import FileSelector
from pyspark.sql import SparkSession

from lakehouse.config import parse_config
from lakehouse.io.delta_log import open_table
from lakehouse.io.object_store import S3Store, bucket_of
from lakehouse.servers.seaweedfs import EmbeddedStore
from lakehouse.spark import object_store_conf
from tests.conftest import free_port

KEY, SECRET = "tests-key", "tests-only-not-a-secret"


def config_on(root: str, **storage: object):  # type: ignore[no-untyped-def]
    return parse_config({"project": "p", "kafka": {"bootstrap_servers": "h:1"},
                         "warehouse": {"root": root},
                         "storage": {"credentials": {"access_key": KEY, "secret_key": SECRET},
                                     **storage}})


def test_each_client_reaches_the_store_with_the_storage_settings() -> None:
    assert bucket_of("s3a://lake/shop") == "lake" and bucket_of("s3://b") == "b"
    assert bucket_of("/tmp/w") is None and bucket_of("file:///tmp/w") is None
    store = S3Store("http://127.0.0.1:9000", "eu-west-1", KEY, SECRET)
    assert store.delta_rs_options() == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false", "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    conf = store.hadoop_conf("lake")
    assert conf["fs.s3a.bucket.lake.endpoint"] == "http://127.0.0.1:9000"
    assert conf["fs.s3a.bucket.lake.path.style.access"] == "true"
    assert conf["fs.s3a.bucket.lake.connection.ssl.enabled"] == "false"
    assert conf["fs.s3a.bucket.lake.secret.key"] == SECRET
    assert all(k.startswith("fs.s3a.bucket.lake.") for k in conf), "only this bucket's"
    role = S3Store("https://s3.eu-west-1.amazonaws.com", "eu-west-1", path_style=False)
    assert "AWS_ACCESS_KEY_ID" not in role.delta_rs_options()
    assert role.delta_rs_options()["AWS_ALLOW_HTTP"] == "false"
    assert not any(k.endswith("key") for k in role.hadoop_conf("lake"))

    on_store = config_on("s3a://lake/shop", endpoint="http://10.0.0.5:8333")
    assert on_store.warehouse.storage_options["AWS_ENDPOINT_URL"] == "http://10.0.0.5:8333"
    assert on_store.warehouse.table_uri("silver", "orders") == "s3a://lake/shop/silver/orders"
    mine = parse_config({"project": "p", "kafka": {"bootstrap_servers": "h:1"}, "warehouse": {
        "root": "s3a://lake/shop", "storage_options": {"AWS_REGION": "mine"}}})
    assert mine.warehouse.storage_options["AWS_REGION"] == "mine", "the warehouse's own win"
    assert config_on("/tmp/w").warehouse.storage_options == {}, "a local warehouse: none"
    assert object_store_conf(config_on("/tmp/w")) == {}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    store = EmbeddedStore("127.0.0.1", free_port(), str(tmp_path / "storage"),
                          f"lake-{tmp_path.name.replace('_', '-')[:30].lower().rstrip('-')}",
                          "us-east-1", KEY, SECRET)
    store.up()
    yield store
    store.down()


def test_spark_and_delta_rs_share_tables_and_a_checkpoint_on_the_store(
        store: EmbeddedStore, spark: SparkSession) -> None:
    config = config_on(f"s3a://{store.bucket}/shop", endpoint=store.endpoint)
    # What build_session sets at start, set on the suite's running session.
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    settings = object_store_conf(config)
    assert settings[f"spark.hadoop.fs.s3a.bucket.{store.bucket}.endpoint"] == store.endpoint
    for key, value in settings.items():
        hadoop.set(key.removeprefix("spark.hadoop."), value)
    source = config.warehouse.table_uri("bronze", "numbers")
    copy = config.warehouse.table_uri("silver", "numbers")
    spark.range(10).write.format("delta").save(source)
    spark.range(10, 15).write.format("delta").mode("append").save(source)
    query = (spark.readStream.format("delta").load(source).writeStream.format("delta")
             .option("checkpointLocation", config.warehouse.checkpoint_uri("silver.numbers"))
             .trigger(availableNow=True).start(copy))
    query.awaitTermination()
    assert spark.read.format("delta").load(copy).count() == 15
    for uri, version in ((source, 1), (copy, 0)):
        table = open_table(uri, config.warehouse.storage_options)
        assert table is not None and table.version() == version
        assert sorted(table.to_pyarrow_table().column("id").to_pylist()) == list(range(15))
    assert store.store().has_bucket(store.bucket)
    listed = store.store().filesystem().get_file_info(
        FileSelector(f"{store.bucket}/shop/_checkpoints/silver.numbers"))
    assert {i.base_name for i in listed} >= {"commits", "offsets"}
