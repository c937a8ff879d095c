"""A real Marquez takes an OpenLineage run and serves it back as a lineage graph."""

from __future__ import annotations

import json
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

from lakehouse.servers.marquez import Marquez

NS = "t"
PRODUCER = "https://github.com/example/lakehouse/tests"
SCHEMA_FACET = "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"


def dataset(name: str, fields: dict[str, str]) -> dict[str, Any]:
    return {"namespace": NS, "name": name, "facets": {"schema": {
        "_producer": PRODUCER, "_schemaURL": SCHEMA_FACET,
        "fields": [{"name": field, "type": kind} for field, kind in fields.items()]}}}


def post_event(marquez: Marquez, event: dict[str, Any]) -> int:
    request = urllib.request.Request(
        f"{marquez.url}/api/v1/lineage", data=json.dumps(event).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return int(response.status)


def test_run_event_becomes_a_lineage_graph(marquez: Marquez) -> None:
    suffix = uuid.uuid4().hex[:8]
    job, source, target = f"silver_orders_{suffix}", f"bronze.orders_{suffix}", f"silver.orders_{suffix}"
    run_id = str(uuid.uuid4())
    for event_type in ("START", "COMPLETE"):
        status = post_event(marquez, {
            "eventType": event_type,
            "eventTime": datetime.now(UTC).isoformat(),
            "run": {"runId": run_id},
            "job": {"namespace": NS, "name": job},
            "inputs": [dataset(source, {"value": "BINARY", "offset": "BIGINT"})],
            "outputs": [dataset(target, {"order_id": "STRING", "amount": "DOUBLE"})],
            "producer": PRODUCER,
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        })
        assert status == 201

    stored = marquez.get(f"namespaces/{NS}/jobs/{job}")
    assert stored["latestRun"]["id"] == run_id
    assert stored["latestRun"]["state"] == "COMPLETED"
    assert stored["inputs"] == [{"namespace": NS, "name": source}]
    assert stored["outputs"] == [{"namespace": NS, "name": target}]

    graph = marquez.get("lineage", nodeId=f"dataset:{NS}:{target}", depth=2)["graph"]
    edges = {(edge["origin"], edge["destination"])
             for node in graph for edge in node["inEdges"] + node["outEdges"]}
    assert (f"dataset:{NS}:{source}", f"job:{NS}:{job}") in edges
    assert (f"job:{NS}:{job}", f"dataset:{NS}:{target}") in edges
    fields = {node["id"]: [f["name"] for f in node["data"]["fields"]]
              for node in graph if node["type"] == "DATASET"}
    assert fields[f"dataset:{NS}:{target}"] == ["order_id", "amount"]
