"""A warehouse on an S3-compatible store: the settings each client gets from ``storage:``,
and Spark (Hadoop's S3A connector, the jars ``make setup`` fetched) and delta-rs sharing
tables and a streaming checkpoint on a real SeaweedFS."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pyarrow.fs import FileSelector
from pyspark.sql import SparkSession

from lakehouse.config import parse_config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta_log import open_table
from lakehouse.io.object_store import S3Store, bucket_of, check_bucket, unanswered
from lakehouse.servers.seaweedfs import EmbeddedStore
from lakehouse.spark import object_store_conf
from tests.conftest import S3_KEY, S3_SECRET, free_port, lakehouse

KEY, SECRET = S3_KEY, S3_SECRET


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


def test_spark_and_delta_rs_share_tables_and_a_checkpoint_on_the_store(
        object_store: EmbeddedStore, spark: SparkSession, tmp_path: Path) -> None:
    store = object_store
    config = config_on(f"s3a://{store.bucket}/{tmp_path.name}", endpoint=store.endpoint)
    # What build_session sets at start (the fixture set it on the suite's session).
    settings = object_store_conf(config)
    assert settings[f"spark.hadoop.fs.s3a.bucket.{store.bucket}.endpoint"] == store.endpoint
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
        FileSelector(f"{store.bucket}/{tmp_path.name}/_checkpoints/silver.numbers"))
    assert {i.base_name for i in listed} >= {"commits", "offsets"}


def test_a_store_that_cannot_be_used_is_named_before_anything_runs(
        object_store: EmbeddedStore, tmp_path: Path) -> None:
    good = object_store.store()
    check_bucket(good, object_store.bucket)
    with pytest.raises(LakehouseError) as denied:
        check_bucket(S3Store(good.endpoint, good.region, KEY, "wrong"), object_store.bucket)
    assert denied.value.code is ErrorCode.STORAGE_DENIED and denied.value.exit_code == 2
    with pytest.raises(LakehouseError) as missing:
        check_bucket(good, "no-such-bucket")
    assert missing.value.code is ErrorCode.STORAGE_NO_BUCKET
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LakehouseError) as away:
        check_bucket(S3Store(nobody, good.region, KEY, SECRET), object_store.bucket)
    assert away.value.code is ErrorCode.STORAGE_UNREACHABLE and away.value.exit_code == 75
    assert unanswered(S3Store(nobody, good.region, KEY, SECRET), ["lake"]) is not None
    assert unanswered(good, [object_store.bucket]) is None

    # The commands say it before they start a server or Spark.
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump({
        "project": "p", "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "warehouse": {"root": f"s3a://{object_store.bucket}/{tmp_path.name}"},
        "storage": {"endpoint": good.endpoint, "embedded": {"enabled": False},
                    "credentials": {"access_key": KEY, "secret_key": "wrong"}}}))
    for args in (["run", "--until-idle"], ["query", "SELECT 1"]):
        refused = lakehouse(conf, *args, timeout=120)
        assert refused.returncode == 2 and "[LH-STORAGE-005]" in refused.stderr, refused.stderr
        assert "Spark" not in refused.stdout and "Kafka" not in refused.stdout
        assert "wrong" not in refused.stdout + refused.stderr
