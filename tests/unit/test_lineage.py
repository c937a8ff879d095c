"""Lineage pieces without Spark or a broker: naming, events against the spec, the
emitter with real transports (a file, an HTTP server that is down), the graph, and the
provenance arithmetic of ``explain``."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from lakehouse.config import parse_config
from lakehouse.lineage import events
from lakehouse.lineage.columns import ColumnLineage
from lakehouse.lineage.datasets import (
    KAFKA_OFFSETS,
    SILVER_VERSIONS,
    Assertion,
    DatasetName,
    kafka_dataset,
    storage_dataset,
)
from lakehouse.lineage.emitter import Emitter, transports
from lakehouse.lineage.explain import Commit, covered_upto, offset_ranges, version_range
from lakehouse.lineage.graph import build, dot, html_page, read_events, text_tree
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
    assert config(tmp_path).lineage_file == str(tmp_path / "wh" / "_lineage" / "events.jsonl")
    from lakehouse.errors import ErrorCode, LakehouseError
    with pytest.raises(LakehouseError) as err:
        config(tmp_path, http_url="marquez:5000")
    assert err.value.code == ErrorCode.CONFIG_BAD_VALUE
    off = config(tmp_path, {"LAKEHOUSE_LINEAGE_DISABLED": "1"})
    from lakehouse.lineage.tracking import Lineage
    assert not Lineage.from_config(off).emitter.enabled


def sample_events() -> list[object]:
    """A query run and one micro-batch run, with every facet the pipelines use."""
    ns, topic = "shop", kafka_dataset("b1:9092", "orders")
    bronze = storage_dataset("/wh/bronze/orders")
    silver = storage_dataset("/wh/silver/orders")
    schema = pa.schema([("id", pa.string()), ("tags", pa.list_(pa.string())),
                        ("h", pa.list_(pa.struct([("k", pa.string()), ("v", pa.binary())])))])
    facts = events.TableFacts(schema, 3, rows=10, bytes=4096, files=1)
    columns = ColumnLineage({"id": {"value": "TRANSFORMATION"}, "_offset": {"offset": "IDENTITY"},
                             "n": {}}, {"event_type": frozenset({"FILTER"})})
    query = events.run_event(events.RunState.START, events.job(ns, "silver.orders", False),
                             "01a20281-449c-79c5-816f-9d742b771ecf",
                             {"processing_engine": events.engine_facet("4.1.4", "0.1.0")},
                             [events.input_dataset(bronze, facts)],
                             [events.output_dataset(silver, facts, columns, bronze)])
    batch = events.run_event(
        events.RunState.COMPLETE, events.job(ns, "silver.orders", True),
        "01a20281-449c-79c5-816f-9d742b771ec0",
        {"parent": events.parent_facet(ns, "silver.orders", "01a20281-449c-79c5-816f-9d742b771ecf"),
         "lakehouse_batch": events.BatchRunFacet(batchId=4, query="silver.orders", appId="a:b",
                                                 producer=events.PRODUCER)},
        [events.input_dataset(bronze, facts, (2, 3), assertions=[
            Assertion("amount_in_range", False, "amount", "warning")]),
         events.input_dataset(topic, None, offsets=[{"partition": 0, "from": 5, "to": 9}])],
        [events.output_dataset(silver, facts, columns, bronze)])
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
    broken = json.loads(json.dumps(parsed[0]))
    broken["outputs"][0]["facets"]["schema"]["fields"][0] = {"type": "string"}
    with pytest.raises(Exception, match="name"):
        validate(broken)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_dead_lineage_server_loses_nothing_in_the_file(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path, http_url=f"http://127.0.0.1:{closed_port()}",
                 http_timeout_seconds=0.5)
    emitter = Emitter(transports(cfg))
    sent = sample_events() * 3

    def failing() -> object:
        raise RuntimeError("cannot read the table")

    emitter.submit(failing)  # a build that fails is skipped, the rest go on
    for e in sent:
        emitter.submit(lambda e=e: e)
    emitter.close(timeout=60)
    lines = read_events(cfg.lineage_file)
    assert len(lines) == len(sent)
    assert [e["run"]["runId"] for e in lines] == [e.run.runId for e in sent]  # type: ignore[attr-defined]
    http = next(s for s in emitter.sinks if s.label.startswith("http"))
    assert http.sent == 0 and http.failed + http.dropped == len(sent)
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
