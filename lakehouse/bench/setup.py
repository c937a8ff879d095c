"""The bench's own world: the project's default settings on a broker and a warehouse of
the run's own, with one source, orders, on topic ``TOPIC``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from lakehouse.config import Config, parse_config
from lakehouse.io.processes import free_port
from lakehouse.jvm import PROJECT_ROOT
from lakehouse.servers.seaweedfs import EmbeddedStore

SOURCE = "orders"
TOPIC = "bench.orders.v1"


def bench_config(work: Path, bootstrap: str, store: EmbeddedStore | None = None,
                 warehouse: str = "warehouse", digests: bool = True,
                 kafka: Mapping[str, str] | None = None) -> Config:
    """The project's default settings (``conf/local.yaml``) on this run's broker (its
    client's ``kafka`` properties) and warehouse (``warehouse`` in ``work``, or on
    ``store``), with the orders source only, in JSON (what the limit and the naive pattern
    are measured on); ``digests``: the tables' chains on (the default) or off
    (``retention.tamper_evidence``)."""
    doc = yaml.safe_load((PROJECT_ROOT / "conf" / "local.yaml").read_text())
    doc["kafka"] = {"bootstrap_servers": bootstrap, "embedded": {"enabled": False},
                    "client_properties": dict(kafka or {})}
    doc["warehouse"] = {"root": f"s3a://{store.bucket}/{warehouse}" if store
                        else str(work / warehouse)}
    doc["retention"] = {**(doc.get("retention") or {}), "tamper_evidence": digests}
    if store:
        doc["storage"] = {**doc.get("storage", {}), "endpoint": store.endpoint,
                          "embedded": {"enabled": False}}
    doc["sources"] = {SOURCE: {**(doc.get("sources") or {}).get(SOURCE, {}), "topic": TOPIC,
                               "format": "json"}}
    return parse_config(doc)


def own_store(work: Path) -> EmbeddedStore:
    """An S3 store of the run's own, with conf/local.yaml's local-only key."""
    storage = yaml.safe_load((PROJECT_ROOT / "conf" / "local.yaml").read_text())["storage"]
    key = storage["credentials"]
    return EmbeddedStore("127.0.0.1", free_port("127.0.0.1"), str(work / "storage"), "bench",
                         storage.get("region", "us-east-1"), key["access_key"], key["secret_key"])
