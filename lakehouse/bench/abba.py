"""What one setting costs on the hot path: tables run again over the same backlog, on
tables of their own, with the setting off, on, on, off (the order cancels a JVM still
warming up). The bench measures two: the tables' chain digests (``lakehouse.io.chain``,
tamper evidence) on bronze and silver, and Kafka over TLS (SASL_SSL against plaintext)
on bronze."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from lakehouse import graph
from lakehouse.bench.setup import SOURCE, TOPIC, bench_config
from lakehouse.config import Config
from lakehouse.io.certificates import Authority
from lakehouse.io.kafka_producer import produce
from lakehouse.io.kafka_security import sasl_properties
from lakehouse.io.processes import free_port
from lakehouse.servers.broker import EmbeddedBroker
from lakehouse.servers.seaweedfs import EmbeddedStore

ORDER = (False, True, True, False)
"""Off, on, on, off."""


def abba(spark: Any, configs: Callable[[int, bool], Config], records: int,
         tables: Sequence[str], switch: Callable[[bool], None] | None = None
         ) -> dict[str, dict[str, float]]:
    """Each of ``tables`` run over ``records`` once per ``ORDER`` round, on the tables of
    ``configs(round, on)`` (``switch(on)`` called before the round runs, for a setting of
    the process):
    per table the records/s off and on (each the mean of two) and the cost of on."""
    from lakehouse.runner import run
    seconds: dict[str, dict[str, float]] = {t: {} for t in tables}
    for round_, on in enumerate(ORDER):
        state = "on" if on else "off"
        pipeline = graph.build(configs(round_, on))
        if switch is not None:
            switch(on)
        for table, spent in seconds.items():
            t0 = time.monotonic()
            run(pipeline, until_idle=True, tables=[table], spark=spark, printer=lambda _: None)
            spent[state] = spent.get(state, 0.0) + time.monotonic() - t0
    runs = {"on": ORDER.count(True), "off": ORDER.count(False)}
    rates = {t: {state: runs[state] * records / s for state, s in spent.items()}
             for t, spent in seconds.items()}
    for rate in rates.values():
        rate["cost"] = 1 - rate["on"] / rate["off"]
    return rates


def digest_cost(spark: Any, work: Path, bootstrap: str, store: EmbeddedStore | None,
                records: int, tables: Sequence[str], restore: bool
                ) -> dict[str, dict[str, float]]:
    """``tables`` with the tables' chain digests off and on; linking is ``restore``
    afterwards."""
    from lakehouse.io import chain
    try:
        return abba(spark, lambda n, on: bench_config(work, bootstrap, store, f"digests_{n}", on),
                    records, tables, chain.enable)
    finally:
        chain.enable(restore)


def tls_cost(spark: Any, work: Path, bootstrap: str, store: EmbeddedStore | None,
             backlog: Callable[[], Iterable[Any]], records: int) -> tuple[str, dict[str, float]]:
    """Bronze reading the same ``backlog`` from the plaintext broker at ``bootstrap`` and
    from a second one that wants SASL_SSL (a certificate of the run's own authority, a
    SASL/PLAIN user and its ACL): the protocol and the rates."""
    from lakehouse.runner import ensure_source_topics
    password = secrets.token_urlsafe(16)
    broker = EmbeddedBroker(f"127.0.0.1:{free_port('127.0.0.1')}", str(work / "tls-broker"),
                            users={"admin": password, "bench": password},
                            topic_acls={"bench": [TOPIC]}, tls=Authority(work / "tls-ca"))
    client = {**broker.client_properties, **sasl_properties("bench", password),
              "security.protocol": broker.protocol}
    table = f"bronze.{SOURCE}"
    try:
        broker.up()
        ensure_source_topics(bench_config(work, broker.bootstrap, kafka=client), [SOURCE])
        produce(broker.bootstrap, TOPIC, backlog(), client)
        rates = abba(spark, lambda n, on: bench_config(
            work, broker.bootstrap if on else bootstrap, store, f"tls_{n}",
            kafka=client if on else None), records, [table])
    finally:
        broker.down()
    return broker.protocol, rates[table]
