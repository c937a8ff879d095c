"""One set of Kafka client settings for both client libraries (pure).

``kafka.client_properties`` in the config are librdkafka's names (the project's admin and
producer use confluent-kafka). Spark's Kafka connector runs the Java client, which names
a few things differently: credentials go in one ``sasl.jaas.config`` line, a CA file is a
PEM trust store, and a client certificate's file (key and chain in one, which
``ssl.key.location`` and ``ssl.certificate.location`` both name) a PEM key store.
``jvm_properties`` translates; every other key passes unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"
_LOGIN_MODULES = {
    "PLAIN": PLAIN_LOGIN,
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
_LIBRDKAFKA_ONLY = ("sasl.username", "sasl.password", "ssl.ca.location",
                    "ssl.certificate.location", "ssl.key.location")


def jaas_quoted(value: str) -> str:
    """A JAAS option value: quoted, with its quotes and backslashes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sasl_properties(user: str, password: str) -> dict[str, str]:
    """librdkafka properties of a SASL/PLAIN connection without TLS."""
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": user, "sasl.password": password}


def jvm_properties(props: Mapping[str, str]) -> dict[str, str]:
    """The Java client's properties for the same connection as librdkafka ``props``."""
    out = {k: v for k, v in props.items() if k not in _LIBRDKAFKA_ONLY}
    user, password = props.get("sasl.username"), props.get("sasl.password")
    if user is not None and password is not None and "sasl.jaas.config" not in props:
        mechanism = props.get("sasl.mechanism", props.get("sasl.mechanisms", "PLAIN")).upper()
        module = _LOGIN_MODULES.get(mechanism, _LOGIN_MODULES["PLAIN"])
        out["sasl.jaas.config"] = (f"{module} required username={jaas_quoted(user)} "
                                   f"password={jaas_quoted(password)};")
        out.setdefault("sasl.mechanism", mechanism)
        out.pop("sasl.mechanisms", None)
    if "ssl.ca.location" in props and "ssl.truststore.location" not in props:
        out["ssl.truststore.type"] = "PEM"
        out["ssl.truststore.location"] = props["ssl.ca.location"]
    if "ssl.key.location" in props and "ssl.keystore.location" not in props:
        out["ssl.keystore.type"] = "PEM"
        out["ssl.keystore.location"] = props["ssl.key.location"]
    return out
