"""librdkafka client settings translated for Spark's Java Kafka client (pure), and the ones
librdkafka refuses when a client is made (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.kafka_admin import admin_client
from lakehouse.io.kafka_security import jvm_properties


def test_sasl_credentials_become_one_jaas_line() -> None:
    out = jvm_properties({"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                          "sasl.username": "lake", "sasl.password": 'p"w\\d',
                          "ssl.ca.location": "/etc/ca.pem"})
    assert out == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required '
                            'username="lake" password="p\\"w\\\\d";',
        "ssl.truststore.type": "PEM", "ssl.truststore.location": "/etc/ca.pem"}


def test_plain_is_the_default_mechanism_and_explicit_java_settings_win() -> None:
    plain = jvm_properties({"sasl.username": "u", "sasl.password": "p"})
    assert plain["sasl.mechanism"] == "PLAIN" and "PlainLoginModule" in plain["sasl.jaas.config"]
    given = {"sasl.jaas.config": "x required;", "sasl.username": "u", "sasl.password": "p"}
    assert jvm_properties(given) == {"sasl.jaas.config": "x required;"}
    assert jvm_properties({"client.id": "c"}) == {"client.id": "c"}


def test_a_client_certificate_file_becomes_a_pem_key_store() -> None:
    out = jvm_properties({"security.protocol": "SSL", "ssl.ca.location": "/w/_tls/ca.pem",
                          "ssl.certificate.location": "/w/_tls/etl.pem",
                          "ssl.key.location": "/w/_tls/etl.pem"})
    assert out == {"security.protocol": "SSL",
                   "ssl.truststore.type": "PEM", "ssl.truststore.location": "/w/_tls/ca.pem",
                   "ssl.keystore.type": "PEM", "ssl.keystore.location": "/w/_tls/etl.pem"}


def test_a_setting_librdkafka_refuses_is_a_coded_error(tmp_path: Path) -> None:
    """A Java client's name, or a key file that is not one: LH-KAFKA-005 naming it."""
    for props in ({"ssl.truststore.location": "/etc/kafka/truststore.jks"},
                  {"security.protocol": "SSL", "ssl.key.location": str(tmp_path / "none.pem"),
                   "ssl.certificate.location": str(tmp_path / "none.pem")}):
        with pytest.raises(LakehouseError) as caught:
            admin_client("127.0.0.1:9", props)
        assert caught.value.code is ErrorCode.KAFKA_BAD_OPTION
        assert next(iter(props)) in caught.value.message or "ssl" in caught.value.message
