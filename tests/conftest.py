"""Shared fixtures: one real Apache Kafka broker and one local[2] SparkSession per session."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, bootstrap: str, warehouse: Path, *, embedded: bool = False,
                 broker_dir: Path | None = None, silver: dict | None = None,
                 **streaming: object) -> Path:
    """A config file for a test: its own warehouse, the given broker."""
    doc = {
        "project": "test",
        "kafka": {"bootstrap_servers": bootstrap,
                  "embedded": {"enabled": embedded,
                               **({"data_dir": str(broker_dir)} if broker_dir else {})}},
        "warehouse": {"root": str(warehouse)},
        "spark": {"master": "local[2]", "shuffle_partitions": 2},
        "streaming": {"trigger_seconds": 0.5, "max_offsets_per_trigger": 50000, **streaming},
        "silver": silver or {},
        "sources": {"orders": {"topic": "shop.orders.v1", "partitions": 6},
                    "clickstream": {"topic": "web.clickstream.v1", "partitions": 3}},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Apache Kafka broker process (KRaft, single node) on a free port."""
    from lakehouse.broker import EmbeddedBroker
    b = EmbeddedBroker(f"127.0.0.1:{free_port()}", str(tmp_path_factory.mktemp("broker")))
    b.up()
    yield b.bootstrap
    b.down()


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The one SparkSession of the test run."""
    from lakehouse.config import parse_config
    from lakehouse.spark import build_session
    config = parse_config({
        "project": "test", "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "warehouse": {"root": str(tmp_path_factory.mktemp("wh"))},
        "spark": {"master": "local[2]", "shuffle_partitions": 2}})
    session = build_session(config)
    yield session
    session.stop()
