"""The pipelines' lineage as a real Marquez shows it: both producers (the Spark listener
and the project) send over HTTP; Marquez's API must return the jobs, the datasets with
their versions and schemas, the graph topic -> bronze -> silver -> gold, the column
lineage of a gold table and the suite's data-quality facet."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from lakehouse.batch import kafka_dataset, storage_dataset
from lakehouse.config import load_config
from lakehouse.generator import Record
from lakehouse.io.kafka_admin import TopicSpec, ensure_topics
from lakehouse.io.kafka_producer import produce
from lakehouse.servers.marquez import Marquez
from tests.conftest import lakehouse, write_config


def orders(n: int) -> list[Record]:
    at = datetime.now(UTC) - timedelta(minutes=10)
    out = []
    for i in range(n):
        event = {"event_id": f"m-{i}", "event_type": "order_placed", "order_id": f"o-{i}",
                 "customer_id": f"c-{i % 4}", "event_time": (at + timedelta(seconds=i))
                 .isoformat().replace("+00:00", "Z"), "amount": -1.0 if i == 7 else 3.5 + i,
                 "currency": "EUR", "quantity": 1, "category": ("books", "toys")[i % 2],
                 "country": "DE"}
        out.append(Record(b"k", json.dumps(event).encode(), ()))
    return out


def node_id(kind: str, namespace: str, name: str, field: str | None = None) -> str:
    return f"{kind}:{namespace}:{name}" + (f":{field}" if field else "")


def wait_for(fetch: Any, ok: Any, seconds: float = 60.0) -> Any:
    """Marquez stores events as they come: poll until the answer holds."""
    deadline = time.monotonic() + seconds
    while True:
        value = fetch()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(1)


def test_marquez_shows_one_connected_graph_from_topic_to_gold(
        marquez: Marquez, broker: str, tmp_path: Path) -> None:
    path = write_config(tmp_path / "conf.yaml", broker, tmp_path / "wh")
    doc = yaml.safe_load(path.read_text())
    doc["sources"] = {"orders": {"topic": "orders.marquez"}, "clickstream": {"enabled": False}}
    doc["lineage"] = {"http_url": marquez.url, "namespace": "shop-marquez"}
    path.write_text(yaml.safe_dump(doc))
    config = load_config(str(path))
    ensure_topics(broker, [TopicSpec("orders.marquez", 2)])
    assert produce(broker, "orders.marquez", orders(40)) == 40
    # A process of its own, as a user runs it: its session has the listener.
    done = lakehouse(path, "run", "--until-idle", "--table", "bronze.orders",
                     "--table", "silver.orders", "--table", "gold.revenue_by_category_5m")
    assert done.returncode == 0, done.stderr[-3000:]

    ns = config.lineage_namespace
    topic = kafka_dataset(config.kafka.bootstrap_servers, "orders.marquez")
    table = {n: storage_dataset(config.warehouse.table_uri(*n.split("."))) for n in
             ("bronze.orders", "silver.orders", "gold.revenue_by_category_5m")}
    gold = table["gold.revenue_by_category_5m"]

    # The jobs: the project's streaming queries and the listener's application.
    jobs = wait_for(lambda: {j["name"] for j in marquez.get(f"namespaces/{ns}/jobs",
                                                             limit=500)["jobs"]},
                    lambda names: "gold.revenue_by_category_5m.batch" in names)
    assert {"lakehouse", "lakehouse.bronze.orders", "lakehouse.silver.orders",
            "lakehouse.gold.revenue_by_category_5m", "silver.orders.batch",
            "lakehouse.execute_merge_into_command"} <= jobs

    # The gold table: versions (one per commit the listener and the project reported)
    # and its schema.
    dataset = marquez.get(f"namespaces/{quote(gold.namespace, safe='')}/datasets/"
                          f"{quote(gold.name, safe='')}")
    assert {"window_start", "category", "revenue"} <= {f["name"] for f in dataset["fields"]}
    versions = marquez.get(f"namespaces/{quote(gold.namespace, safe='')}/datasets/"
                           f"{quote(gold.name, safe='')}/versions", limit=100)["versions"]
    assert len(versions) >= 2

    # The graph: topic -> bronze job -> bronze -> silver job -> silver -> gold job -> gold.
    graph = marquez.get("lineage", nodeId=node_id("dataset", gold.namespace, gold.name),
                        depth=20)["graph"]
    edges = {(n["id"], e["destination"]) for n in graph for e in n["outEdges"]}
    # Marquez files a job with a parent under the parent's name: the streaming queries
    # are children of the listener's application run (job "lakehouse").
    chain = [node_id("dataset", topic.namespace, topic.name),
             node_id("job", ns, "lakehouse.bronze.orders"),
             node_id("dataset", *vars(table["bronze.orders"]).values()),
             node_id("job", ns, "lakehouse.silver.orders"),
             node_id("dataset", *vars(table["silver.orders"]).values()),
             node_id("job", ns, "lakehouse.gold.revenue_by_category_5m"),
             node_id("dataset", gold.namespace, gold.name)]
    missing = [(a, b) for a, b in pairwise(chain) if (a, b) not in edges]
    assert not missing, f"edges missing from Marquez's graph: {missing}; it has {sorted(edges)}"

    # Column lineage of the gold table: revenue comes from silver's amount.
    columns = marquez.get("column-lineage", nodeId=node_id("datasetField", gold.namespace,
                                                           gold.name, "revenue"), depth=5)
    sources = {(n["data"]["namespace"], n["data"]["dataset"], n["data"]["field"])
               for n in columns["graph"] if n["type"] == "DATASET_FIELD"}
    silver = table["silver.orders"]
    assert (silver.namespace, silver.name, "amount") in sources

    # The data-quality facet of a silver batch: the suite's assertions, one failing
    # (the record with a negative amount).
    runs = marquez.get(f"namespaces/{ns}/jobs/silver.orders.batch/runs", limit=50)["runs"]
    assertions = [a for r in runs for i in r["inputDatasetVersions"]
                  for a in i["facets"].get("dataQualityAssertions", {}).get("assertions", [])]
    assert {"amount_in_range", "currency_iso_code"} <= {a["assertion"] for a in assertions}
    assert any(not a["success"] for a in assertions)
