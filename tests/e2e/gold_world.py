"""The warehouse the gold and lineage end-to-end tests share: a real broker, topics of its
own, and the events produced so far (the oracle of the gold tests)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.generator import Record
from lakehouse.io.kafka_admin import TopicSpec, ensure_topics
from lakehouse.io.kafka_producer import produce
from tests.conftest import ROOT, free_port, lakehouse, run_pipelines, write_config

NOW = datetime.now(UTC).replace(microsecond=0)
BASE = NOW - timedelta(minutes=20)
DAY0 = datetime.combine((NOW - timedelta(days=3)).date(), datetime.min.time(), UTC)
KINDS = ("order_placed", "order_placed", "order_refunded", "order_paid")
CATEGORIES = ("books", "文具", "café & küche")


def iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order(n: int, at: datetime, kind: str | None = None, amount: str | None = None
          ) -> dict[str, Any]:
    return {"event_id": f"o-{n}", "event_type": kind or KINDS[n % 4], "order_id": f"ord-{n}",
            "customer_id": f"c-{n % 5}", "event_time": iso(at),
            "amount": float(amount or f"{5 + n * 1.37:.2f}"), "currency": "EUR",
            "quantity": 1, "category": CATEGORIES[n % 3], "country": ("DE", "FR", "JP")[n % 3]}


def click(n: int, user: str, session: str, at: datetime) -> dict[str, Any]:
    return {"event_id": f"k-{n}", "event_type": "page_view", "user_id": user,
            "session_id": session, "url": "https://shop.example.com/", "event_time": iso(at)}


class World:
    """The broker topics, config and warehouse of this module, and what was produced."""

    def __init__(self, broker: str, root: Path, shape: str = "chained",
                 warehouse: str | None = None, storage: dict | None = None) -> None:
        """``warehouse``: an ``s3a://`` one on the ``storage`` store instead of a folder."""
        self.broker = broker
        self.warehouse = warehouse or root / "warehouse"
        suffix = root.name
        self.config = write_config(root / "conf.yaml", broker, self.warehouse, shape=shape,
                                   topics={"orders": f"orders.{suffix}",
                                           "clickstream": f"clicks.{suffix}"},
                                   storage=storage)
        doc = yaml.safe_load(self.config.read_text())
        # Lineage goes to the file and to a lineage server that is down: the pipelines
        # must not notice.
        doc["lineage"] = {"http_url": f"http://127.0.0.1:{free_port()}",
                          "http_timeout_seconds": 1}
        self.config.write_text(yaml.safe_dump(doc))
        ensure_topics(broker, [TopicSpec(f"orders.{suffix}", 3), TopicSpec(f"clicks.{suffix}", 2)])
        self.topics = {"orders": f"orders.{suffix}", "clickstream": f"clicks.{suffix}"}
        self.orders: dict[str, dict[str, Any]] = {}
        self.clicks: dict[str, dict[str, Any]] = {}

    def send(self, orders: list[Any], clicks: list[Any]) -> None:
        for source, events, valid in (("orders", orders, self.orders),
                                      ("clickstream", clicks, self.clicks)):
            records = [Record(b"k", e if isinstance(e, bytes) else json.dumps(e).encode(), ())
                       for e in events]
            assert produce(self.broker, self.topics[source], records) == len(records)
            for e in events:
                if isinstance(e, dict):
                    valid.setdefault(e["event_id"], e)

    def run(self, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess:
        return lakehouse(self.config, *(args or ("run", "--until-idle")), crash_at=crash_at)

    def run_here(self, spark: SparkSession, *, lineage: bool = True
                 ) -> subprocess.CompletedProcess:
        """``run --until-idle`` on the suite's Spark session (``run_pipelines``).
        ``lineage=False``: the same config with lineage switched off, for a warehouse whose
        lineage events are checked (tests/e2e/test_lineage_e2e.py): the suite's
        session has no OpenLineage listener, so its runs would emit query runs without the
        listener's application run as their parent."""
        if lineage:
            return run_pipelines(self.config, spark)
        doc = yaml.safe_load(self.config.read_text())
        doc["lineage"] = {"enabled": False}
        quiet = self.config.with_name("conf-no-lineage.yaml")
        quiet.write_text(yaml.safe_dump(doc))
        return run_pipelines(quiet, spark)

    def gold(self, name: str) -> list[dict[str, Any]]:
        return DeltaTable(str(self.warehouse / "gold" / name)).to_pyarrow_table().to_pylist()

    def next_batch(self, query: str) -> int:
        commits = self.warehouse / "_checkpoints" / query / "commits"
        return max(int(p.name) for p in commits.iterdir() if p.name.isdigit()) + 1

    def notebook(self, name: str) -> tuple[list[dict[str, Any]], str]:
        """Execute ``notebooks/<name>`` against this warehouse (as the analyst or auditor
        would, from the project root); its outputs, and their text. Fails on any error."""
        import nbformat
        from nbclient import NotebookClient
        notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        os.environ["LAKEHOUSE_CONF"] = str(self.config)
        try:
            NotebookClient(notebook, timeout=300, kernel_name="python3",
                           resources={"metadata": {"path": str(ROOT)}}).execute()
        finally:
            os.environ.pop("LAKEHOUSE_CONF")
        outputs = [o for cell in notebook.cells if cell.cell_type == "code"
                   for o in cell.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"]
        text = "".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "")
                       for o in outputs)
        return outputs, text
