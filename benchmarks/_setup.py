"""What the benchmarks share: a throw-away warehouse and embedded broker on a free port."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lakehouse.broker import EmbeddedBroker
from lakehouse.config import Config, parse_config
from lakehouse.runner import ensure_source_topics


@contextmanager
def bench_environment(max_per_batch: int) -> Iterator[Config]:
    """A config with one ``orders`` source (topic created) and a running broker; both
    are removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        config = parse_config({
            "project": "bench",
            "kafka": {"bootstrap_servers": f"127.0.0.1:{port}"},
            "warehouse": {"root": str(Path(tmp) / "warehouse")},
            "streaming": {"trigger_seconds": 0, "max_offsets_per_trigger": max_per_batch},
            "silver": {"max_bytes_per_trigger": "16m"},
            "sources": {"orders": {"topic": "bench.orders", "partitions": 6}}})
        broker = EmbeddedBroker(config.kafka.bootstrap_servers, config.broker_data_dir)
        broker.up()
        try:
            ensure_source_topics(config, ["orders"])
            yield config
        finally:
            broker.down()
