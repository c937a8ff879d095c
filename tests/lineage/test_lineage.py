"""Lineage pieces without Spark or a broker: naming, events against the spec, the
emitter with real transports (a file, an HTTP server that is down), the graph, and the
provenance arithmetic of ``explain``."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openlineage.client.transport.async_http import AsyncHttpTransport

from lakehouse.audit.explain import Commit, covered_upto, offset_ranges, version_range
from lakehouse.batch import (
    KAFKA_OFFSETS,
    SILVER_VERSIONS,
    Assertion,
    DatasetName,
    kafka_dataset,
    storage_dataset,
)
from lakehouse.config import parse_config
from lakehouse.lineage import events
from lakehouse.lineage.columns import ColumnLineage
from lakehouse.lineage.emitter import Emitter, transport
from lakehouse.lineage.graph import build, dot, html_page, read_events, text_tree
from lakehouse.lineage.listener import RunRef, application_run, job_name, session_conf
from tests.lineage_schema import validate


def config(tmp_path: Path, env: dict[str, str] | None = None, **lineage: object):  # type: ignore[no-untyped-def]
    return parse_config({"project": "shop", "kafka": {"bootstrap_servers": "b1:9092,b2:9092"},
                         "warehouse": {"root": str(tmp_path / "wh")}, "lineage": lineage},
                        env=env or {})


def test_dataset_naming_follows_the_openlineage_spec() -> None:
    assert kafka_dataset("b1:9092, b2:9092", "shop.orders.v1") == \
        DatasetName("kafka://b1:9092", "shop.orders.v1")
    assert storage_dataset("/wh/gold/t") == DatasetName("file", "/wh/gold/t")
    assert storage_dataset("file:///wh/gold/t") == DatasetName("file", "/wh/gold/t")
    assert storage_dataset("s3://bucket/shop/gold/t") == DatasetName("s3://bucket", "shop/gold/t")


def test_kill_switch_and_config_checks(tmp_path: Path) -> None:
    assert config(tmp_path).lineage.enabled
    assert not config(tmp_path, {"LAKEHOUSE_LINEAGE_DISABLED": "true"}).lineage.enabled
    assert config(tmp_path).lineage_namespace == "shop"
    assert config(tmp_path).lineage_file == str(tmp_path / "wh" / "_lineage" / "lakehouse.jsonl")
    assert config(tmp_path).listener_file == str(tmp_path / "wh" / "_lineage" / "spark.jsonl")
    assert config(tmp_path, dir=str(tmp_path / "l")).listener_file == \
        str(tmp_path / "l" / "spark.jsonl")
    from lakehouse.errors import ErrorCode, LakehouseError
    with pytest.raises(LakehouseError) as err:
        config(tmp_path, http_url="marquez:5000")
    assert err.value.code == ErrorCode.CONFIG_BAD_VALUE
    with pytest.raises(LakehouseError) as err:
        config(tmp_path, dir="s3://bucket/lineage")
    assert err.value.code == ErrorCode.CONFIG_BAD_VALUE and err.value.params["key"] == "lineage.dir"
    off = config(tmp_path, {"LAKEHOUSE_LINEAGE_DISABLED": "1"})
    assert session_conf(off, APP_RUN) == {}


APP_RUN = "01a20281-449c-79c5-816f-9d742b771e00"


def test_the_listener_is_configured_from_the_lineage_config(tmp_path: Path) -> None:
    conf = session_conf(config(tmp_path), APP_RUN)
    assert conf["spark.extraListeners"] == "io.openlineage.spark.agent.OpenLineageSparkListener"
    assert conf["spark.openlineage.namespace"] == "shop"
    assert conf["spark.openlineage.transport.transports.file.location"] == \
        str(tmp_path / "wh" / "_lineage" / "spark.jsonl")
    assert not any(".http." in k for k in conf)
    both = session_conf(config(tmp_path, http_url="http://m:5000", http_api_key="k"), APP_RUN)
    assert both["spark.openlineage.transport.transports.http.url"] == "http://m:5000"
    assert both["spark.openlineage.transport.transports.http.endpoint"] == "/api/v1/lineage"
    assert both["spark.openlineage.transport.transports.http.auth.apiKey"] == "k"
    assert both["spark.openlineage.transport.continueOnFailure"] == "true"
    assert session_conf(config(tmp_path, file=False), APP_RUN) == {}  # no transport: no listener

    app = application_run({**conf, "spark.app.name": "ignored"})
    assert app is not None
    assert app.run == RunRef("shop", "lakehouse", APP_RUN) and app.root == app.run
    nested = application_run({**conf, "spark.openlineage.parentJobNamespace": "airflow",
                              "spark.openlineage.parentJobName": "dag.task",
                              "spark.openlineage.parentRunId": "r-1"})
    assert nested is not None and nested.root == RunRef("airflow", "dag.task", "r-1")
    assert application_run({"spark.app.name": "x"}) is None
    assert job_name("Shop Lakehouse-v2") == "shop_lakehouse_v2"
    assert job_name("myApp") == "my_app"


def sample_events() -> list[object]:
    """A query run and one micro-batch run, with every facet the pipelines use."""
    ns, topic = "shop", kafka_dataset("b1:9092", "orders")
    bronze = storage_dataset("/wh/bronze/orders")
    silver = storage_dataset("/wh/silver/orders")
    stats = events.CommitStats(3, rows=10, bytes=4096, files=1)
    app = RunRef(ns, "lakehouse", APP_RUN)
    query_run = RunRef(ns, "silver.orders", "01a20281-449c-79c5-816f-9d742b771ecf")
    columns = ColumnLineage({"id": {"value": "TRANSFORMATION"}, "_offset": {"offset": "IDENTITY"},
                             "n": {}}, {"event_type": frozenset({"FILTER"})})
    query = events.run_event(events.RunState.START, events.job(ns, "silver.orders", False),
                             "01a20281-449c-79c5-816f-9d742b771ecf",
                             {"parent": events.parent_facet(app, app)},
                             [events.input_dataset(bronze)],
                             [events.output_dataset(silver, None, columns, bronze)])
    batch = events.run_event(
        events.RunState.COMPLETE, events.job(ns, "silver.orders", True),
        "01a20281-449c-79c5-816f-9d742b771ec0",
        {"parent": events.parent_facet(query_run, app),
         "lakehouse_batch": events.BatchRunFacet(batchId=4, query="silver.orders", appId="a:b",
                                                 producer=events.PRODUCER)},
        [events.input_dataset(bronze, (2, 3), assertions=[
            Assertion("amount_in_range", False, "amount", "warning")]),
         events.input_dataset(topic, offsets=[{"partition": 0, "from": 5, "to": 9}])],
        [events.output_dataset(silver, stats, columns, bronze)])
    failed = events.run_event(events.RunState.FAIL, events.job(ns, "bronze.orders", False),
                              "01a20281-449c-79c5-816f-9d742b771ec1",
                              {"errorMessage": events.error_facet("boom", "Traceback ...")})
    return [query, batch, failed]


def test_events_validate_against_the_spec_and_bad_ones_do_not() -> None:
    from openlineage.client.serde import Serde
    parsed = [json.loads(Serde.to_json(e)) for e in sample_events()]
    for event in parsed:
        validate(event)
    lineage = parsed[1]["outputs"][0]["facets"]["columnLineage"]
    assert lineage["fields"]["id"]["inputFields"][0]["field"] == "value"
    assert "n" not in lineage["fields"]  # no direct input: covered by the dataset-wide list
    assert lineage["dataset"][0]["transformations"][0] == {"type": "INDIRECT", "subtype": "FILTER"}
    assert parsed[1]["outputs"][0]["outputFacets"]["outputStatistics"]["size"] == 4096
    broken = json.loads(json.dumps(parsed[1]))
    del broken["run"]["facets"]["parent"]["run"]["runId"]
    with pytest.raises(Exception, match="runId"):
        validate(broken)
    broken = json.loads(json.dumps(parsed[1]))
    broken["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] = "ten"
    with pytest.raises(Exception, match="ten"):
        validate(broken)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_dead_lineage_server_loses_nothing_in_the_file(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path, http_url=f"http://127.0.0.1:{closed_port()}",
                 http_timeout_seconds=0.5)
    emitter = Emitter(transport(cfg))
    sent = sample_events() * 3

    def failing() -> object:
        raise RuntimeError("cannot read the table")

    emitter.submit(failing)  # a build that fails is skipped, the rest go on
    for e in sent:
        emitter.submit(lambda e=e: e)
    emitter.close(timeout=60)
    lines = [json.loads(line) for line in Path(cfg.lineage_file).read_text().splitlines()]
    assert len(lines) == len(sent)
    assert [e["run"]["runId"] for e in lines] == [e.run.runId for e in sent]  # type: ignore[attr-defined]
    assert emitter.transport is not None
    http = next(t for t in emitter.transport.transports if isinstance(t, AsyncHttpTransport))
    assert http.get_stats() == {"pending": 0, "success": 0, "failed": len(sent)}
    assert emitter.failed == 1
    assert "failed (the pipeline goes on)" in caplog.text


def test_graph_from_events_in_every_format(tmp_path: Path) -> None:
    from openlineage.client.serde import Serde
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(Serde.to_json(e) for e in sample_events()) + "\n{torn",
                    encoding="utf-8")
    g = build(read_events(path), {"/wh/silver/orders": "silver.orders"})
    assert set(g.jobs) == {"silver.orders", "bronze.orders"}  # the batch folds into its query
    assert g.jobs["silver.orders"].batches == 1
    assert g.jobs["bronze.orders"].state == "FAIL"
    silver = storage_dataset("/wh/silver/orders")
    assert g.datasets[silver].version == 3
    assert (silver, "silver.orders") not in g.reads
    assert ("silver.orders", silver) in g.writes
    tree = text_tree(g)
    assert "job silver.orders" in tree and "silver.orders  v3" in tree
    assert tree.index("/wh/bronze/orders") < tree.index("job silver.orders")
    graph = dot(g)
    assert graph.startswith("digraph lineage {") and "-> j_silver_orders;" in graph
    page = html_page(g)
    svg = page[page.index("<svg"):page.index("</svg>") + 6]
    root = ET.fromstring(svg)  # well-formed SVG
    assert len(root.findall(".//{http://www.w3.org/2000/svg}rect")) == len(g.jobs) + len(g.datasets)


def listener_event(job: str, app_run: str, outputs: list[str]) -> dict[str, object]:
    """A run event as the Spark listener writes it (another producer, parent = its app)."""
    return {"eventType": "COMPLETE", "eventTime": "2026-11-30T10:00:00Z",
            "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.53.0/integration/spark",
            "job": {"namespace": "shop", "name": job},
            "run": {"runId": "01a20281-0000-7000-8000-00000000000f", "facets": {"parent": {
                "run": {"runId": app_run}, "job": {"namespace": "shop", "name": "lakehouse"}}}},
            "inputs": [], "outputs": [{"namespace": "file", "name": o} for o in outputs]}


def test_the_graph_folds_the_listeners_runs_inside_streaming_applications() -> None:
    from openlineage.client.serde import Serde
    ours = [json.loads(Serde.to_json(e)) for e in sample_events()]
    other_app = "01a20281-0000-7000-8000-0000000000aa"
    g = build([*ours,
               listener_event("lakehouse.execute_merge_into_command", APP_RUN,
                              ["/wh/silver/orders"]),
               listener_event("lakehouse", other_app, []),  # an application's own run
               listener_event("lakehouse.execute_merge_into_command.gold_t", other_app,
                              ["/wh/gold/t"])])
    # Inside the streaming application: the query job stands for the MERGE.
    assert "lakehouse.execute_merge_into_command" not in g.jobs
    # Elsewhere (a replay, an analyst's SQL): a job of its own; an application's run with
    # no datasets draws nothing.
    assert "lakehouse.execute_merge_into_command.gold_t" in g.jobs and "lakehouse" not in g.jobs
    assert g.outputs("lakehouse.execute_merge_into_command.gold_t") == \
        [storage_dataset("/wh/gold/t")]


def commit(version: int, **metadata: object) -> Commit:
    return Commit(version, datetime.now(UTC), "WRITE",
                  {k.replace("__", "."): v for k, v in metadata.items()})


def test_explain_arithmetic() -> None:
    gold = {0: commit(0), 1: commit(1, **{SILVER_VERSIONS: '{"from": 1, "to": 2}'}),
            2: commit(2, **{SILVER_VERSIONS: '{"from": 3, "to": 3}'}),
            3: commit(3, **{SILVER_VERSIONS: '{"from": 4, "to": 6}'})}
    assert version_range(gold, SILVER_VERSIONS, 2, 3) == (3, 6)
    assert version_range(gold, SILVER_VERSIONS, 0, 0) is None
    assert covered_upto(gold, SILVER_VERSIONS, 2) == 3
    assert covered_upto(gold, SILVER_VERSIONS, 0) is None
    bronze = {1: commit(1, **{KAFKA_OFFSETS: [
                  {"topic": "t", "partition": 0, "from": 0, "to": 5, "records": 5},
                  {"topic": "t", "partition": 1, "from": 0, "to": 2, "records": 2}]}),
              2: commit(2, **{KAFKA_OFFSETS: [
                  {"topic": "t", "partition": 0, "from": 5, "to": 9, "records": 4}]})}
    ranges = offset_ranges(bronze, 0, 2)
    assert [(r.range.partition, r.range.start, r.range.end, r.records) for r in ranges] == \
        [(0, 0, 9, 9), (1, 0, 2, 2)]
    assert [(r.range.partition, r.range.start, r.range.end)
            for r in offset_ranges(bronze, 2, 2)] == [(0, 5, 9)]
