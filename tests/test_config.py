"""Config parsing: valid files freeze, bad ones fail with the promised code and key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from lakehouse.config import load_config, parse_config
from lakehouse.errors import ErrorCode, LakehouseError
from tests.shapes import PAYMENTS_CONTRACT

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = {"project": "p", "kafka": {"bootstrap_servers": "h:9092"},
           "warehouse": {"root": "/tmp/wh"}}


def write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def error_of(fn, *args, **kwargs) -> LakehouseError:  # type: ignore[no-untyped-def]
    with pytest.raises(LakehouseError) as info:
        fn(*args, **kwargs)
    return info.value


@pytest.mark.parametrize("name", ["local.yaml", "cluster.example.yaml"])
def test_shipped_configs_parse(name: str) -> None:
    config = load_config(ROOT / "conf" / name, env={"LAKEHOUSE_KAFKA_PASSWORD": "x",
                                                     "SCHEMA_REGISTRY_AUTH": "u:p",
                                                     "LAKEHOUSE_S3_ACCESS_KEY": "k",
                                                     "LAKEHOUSE_S3_SECRET_KEY": "s",
                                                     "LAKEHOUSE_METRICS_PASSWORD": "m"})
    assert config.source("orders").topic == "shop.orders.v1"
    if config.warehouse.root.startswith("s3a://"):
        assert config.warehouse.storage_options["AWS_SECRET_ACCESS_KEY"] == "s"
    assert dataclasses.is_dataclass(config)


def test_local_defaults() -> None:
    config = load_config(ROOT / "conf" / "local.yaml", env={})
    assert config.kafka.embedded.enabled
    assert config.source("orders").partitions == 6
    assert config.warehouse.checkpoints == config.warehouse.root + "/_checkpoints"
    assert config.warehouse.root.endswith("/warehouse")
    assert config.spark.driver_memory == "4g"  # Spark's 1g default runs out on a backlog
    assert config.spark.driver_java_options == ""
    assert config.streaming.shape == "chained"
    assert config.source("orders").format == "json"
    assert config.schema_registry.embedded.enabled
    assert config.schema_registry.compatibility == "BACKWARD"
    assert config.registry_data_dir == config.warehouse.root + "/_registry"
    assert config.storage.credentials["access_key"] == "lakehouse"
    assert config.storage_data_dir == config.warehouse.root + "/_storage"


def test_the_schema_registry_settings() -> None:
    base = {"project": "p", "kafka": {"bootstrap_servers": "h:1"},
            "warehouse": {"root": "/tmp/w"},
            "sources": {"orders": {"format": "avro"}}}
    config = parse_config(base, env={"LAKEHOUSE_SCHEMA_REGISTRY_URL": "https://sr:8081"})
    assert config.source("orders").format == "avro"
    assert config.schema_registry.url == "https://sr:8081"
    assert not config.schema_registry.embedded.enabled, "a registry given from outside"
    secret = parse_config({**base, "schema_registry": {"client_properties": {
        "basic.auth.user.info": "${SR_AUTH}"}}}, env={"SR_AUTH": "u:p"})
    assert secret.schema_registry.client_properties == {"basic.auth.user.info": "u:p"}
    assert error_of(parse_config, {**base, "schema_registry": {"client_properties": {
        "basic.auth.user.info": "${SR_AUTH}"}}}, env={}).code is ErrorCode.SECRET_NOT_SET
    for bad, key in (({"sources": {"orders": {"format": "xml"}}},
                      "sources.orders.format"),
                     ({"schema_registry": {"compatibility": "SIDEWAYS"}},
                      "schema_registry.compatibility"),
                     ({"schema_registry": {"url": "sr:8081"}}, "schema_registry.url")):
        error = error_of(parse_config, {**base, **bad})
        assert error.code is ErrorCode.CONFIG_BAD_VALUE and error.params["key"] == key


def test_the_object_store_settings() -> None:
    base = {"project": "p", "kafka": {"bootstrap_servers": "h:1"}, "warehouse": {"root": "/tmp/w"}}
    local = parse_config(base)
    assert local.storage.endpoint == "http://127.0.0.1:18333" and local.storage.embedded.enabled
    assert local.storage_data_dir == "/tmp/w/_storage" and local.storage_bucket == "lakehouse"
    remote = parse_config({**base, "warehouse": {"root": "s3a://lake/prod"}, "storage": {
        "endpoint": "https://s3.example:9000", "credentials": {
            "access_key": "${S3_KEY}", "secret_key": "${S3_SECRET}"}}},
        env={"S3_KEY": "k", "S3_SECRET": "s3cr3t"})
    assert remote.storage_bucket == "lake"
    assert remote.storage_data_dir.endswith("/.lakehouse/lake/prod/_storage"), "not in the store"
    assert remote.store_buckets == ["lake"] and local.store_buckets == []
    # A server's files and an appended log need a disk: beside the store, on the driver's.
    assert remote.broker_data_dir.endswith("/.lakehouse/lake/prod/_broker")
    assert remote.registry_data_dir.endswith("/.lakehouse/lake/prod/_registry")
    assert remote.lineage_file.endswith("/.lakehouse/lake/prod/_lineage/lakehouse.jsonl")
    assert local.broker_data_dir == "/tmp/w/_broker" and local.lineage_file.startswith("/tmp/w/")
    assert remote.warehouse.checkpoints == "s3a://lake/prod/_checkpoints"
    assert remote.storage.credentials == {"access_key": "k", "secret_key": "s3cr3t"}
    assert "s3cr3t" not in repr(remote)
    assert error_of(parse_config, {**base, "storage": {"credentials": {
        "secret_key": "${S3_SECRET}"}}}, env={}).code is ErrorCode.SECRET_NOT_SET
    for bad, key in (({"storage": {"endpoint": "s3.example:9000"}}, "storage.endpoint"),
                     ({"storage": {"credentials": {"token": "t"}}}, "storage.credentials.token"),
                     ({"storage": {"embedded": {"startup_timeout_seconds": 0}}},
                      "storage.embedded.startup_timeout_seconds")):
        error = error_of(parse_config, {**base, **bad})
        assert error.code is ErrorCode.CONFIG_BAD_VALUE and error.params["key"] == key


def test_frozen() -> None:
    config = parse_config(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.project = "x"  # type: ignore[misc]


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, {**MINIMAL, "kafka": {"bootstrap_servers": "h:1", "bootstrap": "x"}})
    err = error_of(load_config, path, env={})
    assert err.code is ErrorCode.CONFIG_UNKNOWN_KEY
    assert err.params["key"] == "kafka.bootstrap"
    assert str(path) in str(err)


def test_missing_key(tmp_path: Path) -> None:
    doc = {k: v for k, v in MINIMAL.items() if k != "warehouse"}
    err = error_of(load_config, write(tmp_path, doc), env={})
    assert err.code is ErrorCode.CONFIG_MISSING_KEY
    assert err.params["key"] == "warehouse"


def test_missing_nested_key(tmp_path: Path) -> None:
    doc = {**MINIMAL, "kafka": {"embedded": {"enabled": True}}}
    err = error_of(load_config, write(tmp_path, doc), env={})
    assert err.code is ErrorCode.CONFIG_MISSING_KEY
    assert err.params["key"] == "kafka.bootstrap_servers"


def contracts(tmp_path: Path, *names: str) -> Path:
    """A folder of the project's contracts, plus a payments contract if named."""
    folder = tmp_path / "expectations"
    folder.mkdir()
    for name in names:
        source = ROOT / "expectations" / f"{name}.contract.yaml"
        text = source.read_text() if source.exists() else PAYMENTS_CONTRACT
        (folder / f"{name}.contract.yaml").write_text(text)
    return folder



def test_sources_are_declared_by_their_contracts_and_settings_override(
        tmp_path: Path) -> None:
    folder = contracts(tmp_path, "orders", "payments")
    config = parse_config({**MINIMAL, "silver": {"expectations_dir": str(folder)},
                           "sources": {"orders": {"partitions": 2, "format": "avro"}}})
    assert config.source_names == ("orders", "payments")
    payments = config.source("payments")
    assert (payments.topic, payments.partitions, payments.format) == (
        "shop.payments.v1", 3, "json")  # the contract's, and its defaults
    orders = config.source("orders")
    assert (orders.topic, orders.partitions, orders.format) == ("shop.orders.v1", 2, "avro")


def test_a_disabled_or_undeclared_source_says_why_and_what_to_do(tmp_path: Path) -> None:
    folder = contracts(tmp_path, "orders", "payments")
    config = parse_config({**MINIMAL, "silver": {"expectations_dir": str(folder)},
                           "sources": {"payments": {"enabled": False}}})
    assert config.source_names == ("orders",)
    assert config.declared_sources == ("orders", "payments")
    err = error_of(config.source, "payments")
    assert err.code is ErrorCode.UNKNOWN_SOURCE and "disabled" in str(err)
    assert "sources.payments.enabled: true" in err.hint
    err = error_of(config.source, "refunds")
    assert err.code is ErrorCode.UNKNOWN_SOURCE and "refunds.contract.yaml" in str(err)
    assert "refunds.contract.yaml" in err.hint and "orders" in err.hint
    typo = parse_config({**MINIMAL, "silver": {"expectations_dir": str(folder)},
                         "sources": {"payment": {"partitions": 2}}})
    err = error_of(lambda: typo.source_names)
    assert err.code is ErrorCode.UNKNOWN_SOURCE and err.params["key"] == "sources.payment"


@pytest.mark.parametrize("patch,key", [
    ({"streaming": {"max_offsets_per_trigger": "lots"}}, "streaming.max_offsets_per_trigger"),
    ({"streaming": {"fail_on_data_loss": "yes"}}, "streaming.fail_on_data_loss"),
    ({"streaming": {"max_offsets_per_trigger": 0}}, "streaming.max_offsets_per_trigger"),
    ({"streaming": {"starting_offsets": "beginning"}}, "streaming.starting_offsets"),
    ({"kafka": {"bootstrap_servers": "no-port"}}, "kafka.bootstrap_servers"),
    ({"sources": {"orders": {"partitions": -1}}}, "sources.orders.partitions"),
    ({"spark": ["not", "a", "mapping"]}, "spark"),
    ({"spark": {"driver_memory": "4 GB"}}, "spark.driver_memory"),
    ({"streaming": {"shape": "chain"}}, "streaming.shape"),
    ({"kafka": {"bootstrap_servers": "h:1", "embedded": {"sasl_users": {"etl": "x"}}}},
     "kafka.embedded.admin_user"),
    ({"kafka": {"bootstrap_servers": "h:1", "embedded": {
        "sasl_users": {"admin": "x"}, "topic_acls": {"etl": ["t"]}}}},
     "kafka.embedded.topic_acls.etl"),
    ({"kafka": {"bootstrap_servers": "h:1", "embedded": {"topic_acls": {"etl": "t"}}}},
     "kafka.embedded.topic_acls.etl"),
    ({"kafka": {"bootstrap_servers": "h:1", "embedded": {"topic_acls": {"etl": ["t"]}}}},
     "kafka.embedded.topic_acls.etl"),  # grants, but authenticates no one
    ({"kafka": {"bootstrap_servers": "h:1", "client_properties": {
        "ssl.key.location": "/etc/etl.key", "ssl.certificate.location": "/etc/etl.crt"}}},
     "kafka.client_properties.ssl.key.location"),  # Spark's client wants them in one file
    ({"kafka": {"bootstrap_servers": "h:1", "embedded": {
        "tls": True, "topic_acls": {"broker": ["t"]}}}},
     "kafka.embedded.topic_acls.broker"),  # the broker's own certificate's CN
    ({"schema_registry": {"embedded": {"users": {"etl.x": "p"}}}},
     "schema_registry.embedded.users.etl.x"),  # it becomes a property key
])
def test_bad_values(tmp_path: Path, patch: dict, key: str) -> None:
    err = error_of(load_config, write(tmp_path, {**MINIMAL, **patch}), env={})
    assert err.code is ErrorCode.CONFIG_BAD_VALUE
    assert err.params["key"] == key


def test_missing_file(tmp_path: Path) -> None:
    err = error_of(load_config, tmp_path / "nope.yaml", env={})
    assert err.code is ErrorCode.CONFIG_NOT_FOUND


def test_invalid_yaml(tmp_path: Path) -> None:
    err = error_of(load_config, write(tmp_path, "project: [unclosed"), env={})
    assert err.code is ErrorCode.CONFIG_INVALID_YAML


def test_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, {**MINIMAL, "kafka": {"bootstrap_servers": "h:1",
                                                 "embedded": {"enabled": True}}})
    config = load_config(env={"LAKEHOUSE_CONF": str(path),
                              "LAKEHOUSE_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
                              "LAKEHOUSE_WAREHOUSE": str(tmp_path / "elsewhere")})
    assert config.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert not config.kafka.embedded.enabled, "an external cluster never starts a broker"
    assert config.warehouse.root == str(tmp_path / "elsewhere")
    assert config.warehouse.checkpoints == str(tmp_path / "elsewhere" / "_checkpoints")


def test_explicit_argument_beats_env(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={"LAKEHOUSE_KAFKA_BOOTSTRAP": "env:1"},
                         bootstrap_servers="arg:2")
    assert config.kafka.bootstrap_servers == "arg:2"


def test_object_store_paths_kept() -> None:
    config = parse_config({**MINIMAL, "warehouse": {"root": "s3://b/wh"}})
    assert config.warehouse.table_uri("bronze", "orders") == "s3://b/wh/bronze/orders"
    assert config.warehouse.checkpoints == "s3://b/wh/_checkpoints"


def test_unknown_source() -> None:
    err = error_of(parse_config(MINIMAL).source, "payments")
    assert err.code is ErrorCode.UNKNOWN_SOURCE


def test_locations_follow_the_warehouse(tmp_path: Path) -> None:
    config = parse_config({"project": "p", "kafka": {"bootstrap_servers": "h:1"},
                           "warehouse": {"root": str(tmp_path)}})
    assert config.warehouse.checkpoint_uri("silver.orders") == \
        str(tmp_path / "_checkpoints" / "silver.orders")
    assert config.expectations_dir.name == "expectations"
    assert (config.expectations_dir / "orders.suite.json").is_file()


def test_silver_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(LakehouseError) as err:
        parse_config({"project": "p", "kafka": {"bootstrap_servers": "h:1"},
                      "warehouse": {"root": str(tmp_path)},
                      "silver": {"critical_max_unexpected_percent": 150}})
    assert err.value.code is ErrorCode.CONFIG_BAD_VALUE
    assert err.value.params["key"] == "silver.critical_max_unexpected_percent"


def test_secrets_come_from_the_environment_and_stay_out_of_repr(tmp_path: Path) -> None:
    doc = {**MINIMAL, "kafka": {"bootstrap_servers": "h:9092", "client_properties": {
        "sasl.username": "etl", "sasl.password": "${ETL_PASSWORD}"},
        "embedded": {"sasl_users": {"admin": "${ADMIN_PASSWORD}"}}}}
    err = error_of(load_config, write(tmp_path, doc), env={"ADMIN_PASSWORD": "a"})
    assert err.code is ErrorCode.SECRET_NOT_SET
    assert err.params["variable"] == "ETL_PASSWORD"
    assert err.params["key"] == "kafka.client_properties.sasl.password"
    config = load_config(write(tmp_path, doc), env={"ETL_PASSWORD": "s3cr3t-etl",
                                                    "ADMIN_PASSWORD": "s3cr3t-admin"})
    assert config.kafka.client_properties["sasl.password"] == "s3cr3t-etl"
    assert config.kafka.embedded.sasl_users == {"admin": "s3cr3t-admin"}
    assert "s3cr3t" not in repr(config)


def test_the_embedded_servers_on_tls_are_trusted_by_their_clients(tmp_path: Path) -> None:
    doc = {**MINIMAL, "warehouse": {"root": str(tmp_path / "wh")},
           "kafka": {"bootstrap_servers": "127.0.0.1:9093",
                     "embedded": {"tls": True, "topic_acls": {"etl": ["t"]}},
                     "client_properties": {"security.protocol": "SSL"}},
           "schema_registry": {"url": "https://127.0.0.1:18443/apis/ccompat/v7",
                               "embedded": {"users": {"etl": "${REGISTRY_PASSWORD}"}}},
           "observe": {"metrics_users": {"prometheus": "${METRICS_PASSWORD}"}}}
    config = load_config(write(tmp_path, doc), env={"REGISTRY_PASSWORD": "s3cr3t-reg",
                                                    "METRICS_PASSWORD": "s3cr3t-met"})
    ca = str(tmp_path / "wh" / "_tls" / "ca.pem")
    assert config.tls_dir == str(tmp_path / "wh" / "_tls") and config.registry_tls
    assert config.kafka.client_properties == {"ssl.ca.location": ca, "security.protocol": "SSL"}
    assert config.schema_registry.client_properties == {"ssl.ca.location": ca}
    assert "s3cr3t" not in repr(config)
    doc["kafka"]["client_properties"]["ssl.ca.location"] = "/etc/ours.pem"  # the file wins
    doc["kafka"]["embedded"]["enabled"] = False  # a cluster of one's own: one's own CA
    doc["schema_registry"]["embedded"]["enabled"] = False
    config = load_config(write(tmp_path, doc), env={"REGISTRY_PASSWORD": "r",
                                                    "METRICS_PASSWORD": "m"})
    assert config.kafka.client_properties["ssl.ca.location"] == "/etc/ours.pem"
    assert config.schema_registry.client_properties == {}
