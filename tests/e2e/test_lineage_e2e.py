"""Lineage end to end, over the warehouse the gold tests built (several runs, a kill, a
lost checkpoint) with a lineage server that was down the whole time:

- the Spark listener reported the session's actions; the project's events are valid
  OpenLineage, name datasets exactly as the listener does, and hang in one run tree:
  application run (the listener's) -> query runs -> batch runs;
- the graph is Kafka -> bronze -> silver -> gold, and every version an event reports is
  the Delta commit that carries the event's run id and input range;
- ``explain`` of a gold version that later runs changed gives Kafka offset ranges whose
  records, re-read from bronze, rebuild exactly that version.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse import graph
from lakehouse.aggregates import recompute
from lakehouse.audit.explain import explain
from lakehouse.audit.verify import compare
from lakehouse.batch import BRONZE_VERSIONS, RUN_ID, SILVER_VERSIONS, kafka_dataset, storage_dataset
from lakehouse.config import load_config
from lakehouse.io.delta_log import history as delta_history
from lakehouse.layers.gold import load_gold_plan
from lakehouse.lineage.events import PRODUCER
from lakehouse.lineage.graph import build, read_events
from lakehouse.registry import discover_gold
from tests.e2e.gold_world import World
from tests.lineage_schema import validate

pytestmark = pytest.mark.integration


def lineage_events(world: World) -> list[dict[str, Any]]:
    """The project's events."""
    return read_events(world.warehouse / "_lineage" / "lakehouse.jsonl")


def listener_events(world: World) -> list[dict[str, Any]]:
    """The Spark listener's events."""
    return read_events(world.warehouse / "_lineage" / "spark.jsonl")


def test_events_are_valid_and_form_one_run_tree_with_the_listeners(world: World) -> None:
    events = lineage_events(world)
    assert len(events) > 50
    for e in events:
        validate(e)
    spark = listener_events(world)
    assert spark and all(e["producer"] != PRODUCER for e in spark)
    # The listener's application runs, one per `lakehouse run` process.
    apps = {e["run"]["runId"]: e["job"]["name"] for e in spark
            if "parent" not in e["run"]["facets"]}
    assert set(apps.values()) == {"lakehouse"}
    query_runs = {e["run"]["runId"]: e["job"]["name"] for e in events
                  if e["eventType"] == "START" and not e["job"]["name"].endswith(".batch")}
    for e in events:
        if e["job"]["name"].endswith(".batch"):
            continue
        parent = e["run"]["facets"]["parent"]
        assert apps[parent["run"]["runId"]] == parent["job"]["name"]  # a listener's run
    batches = [e for e in events if e["job"]["name"].endswith(".batch")]
    assert batches
    for e in batches:
        parent = e["run"]["facets"]["parent"]
        assert query_runs[parent["run"]["runId"]] == parent["job"]["name"]
        assert e["job"]["name"] == parent["job"]["name"] + ".batch"
        assert parent["root"]["run"]["runId"] in apps
    # The listener's runs inside those applications hang under them too, and write the
    # very datasets the project's events name: one connected graph. (Spark's writes only:
    # the ledger and the quality results are appended by delta-rs, and every table is
    # created by delta-rs, so a table no Spark job has written yet is not the listener's.)
    inside = [e for e in spark if e["run"]["facets"].get("parent", {})
              .get("run", {}).get("runId") in apps]
    listener_outputs = {(o["namespace"], o["name"]) for e in inside for o in e["outputs"]}
    our_outputs = {(o["namespace"], o["name"]) for e in events for o in e["outputs"]}
    by_spark = {o for o in our_outputs if not o[1].endswith(("/_batches", "/_quality"))
                and DeltaTable(o[1]).version() > 0}
    assert {str(world.warehouse / "silver" / "orders"), str(world.warehouse / "bronze" / "orders")
            } <= {name for _, name in by_spark}
    assert by_spark <= listener_outputs
    schemas = {o["name"]: o["facets"]["schema"] for e in inside for o in e["outputs"]
               if "schema" in o["facets"]}
    silver = str(world.warehouse / "silver" / "orders")
    assert {"event_id", "amount", "_offset"} <= {f["name"] for f in schemas[silver]["fields"]}
    # The listener never disturbed Spark (OpenLineage #3912/#3931 on Spark 4).
    assert "NoSuchMethodError" not in world.first_run_stderr  # type: ignore[attr-defined]
    # Every batch that started finished, except those of the run killed on purpose.
    states: dict[str, list[str]] = defaultdict(list)
    for e in batches:
        states[e["run"]["runId"]].append(e["eventType"])
    unfinished = [r for r, s in states.items() if s == ["START"]]
    assert all(s in (["START", "COMPLETE"], ["START"]) for s in states.values())
    assert len(unfinished) <= 8  # one per query of the killed run at most
    # The lineage server was down: the pipelines said so and went on.
    assert "failed (the pipeline goes on)" in world.first_run_stderr  # type: ignore[attr-defined]


def test_graph_is_kafka_bronze_silver_gold_with_versions_from_the_delta_log(world: World) -> None:
    config = load_config(world.config)
    events = lineage_events(world)
    g = build(events)
    wh = config.warehouse

    def table(layer: str, name: str) -> Any:
        return storage_dataset(wh.table_uri(layer, name))

    topic = kafka_dataset(config.kafka.bootstrap_servers, world.topics["orders"])
    assert g.readers(topic) == ["bronze.orders"]
    assert g.readers(table("bronze", "orders")) == ["silver.orders"]
    assert table("silver", "orders_quarantine") in g.outputs("silver.orders")
    assert sorted(g.readers(table("silver", "orders"))) == ["gold.revenue_by_category_5m",
                                                            "gold.revenue_by_country_daily"]
    assert g.outputs("gold.sessions_daily") == sorted([table("gold", "_sessions_daily_state"),
                                                       table("gold", "sessions_daily")])
    assert g.sources() == sorted([topic, kafka_dataset(config.kafka.bootstrap_servers,
                                                       world.topics["clickstream"])])

    # Each version a batch reports is the commit carrying that batch's run id and range.
    checked = 0
    for e in events:
        if not e["job"]["name"].endswith(".batch") or e["eventType"] != "COMPLETE":
            continue
        ranges = {i["name"]: i["inputFacets"].get("lakehouse_versionRange")
                  for i in e["inputs"]}
        for out in e["outputs"]:
            version = out["facets"].get("version", {}).get("datasetVersion")
            if version is None:
                continue
            commit = next(c for c in delta_history(DeltaTable(out["name"]))
                          if c["version"] == int(version))
            assert commit[RUN_ID] == e["run"]["runId"]
            key = SILVER_VERSIONS if "/gold/" in out["name"] else BRONZE_VERSIONS
            if "/bronze/" not in out["name"]:
                (read,) = [r for r in ranges.values() if r]
                assert json.loads(commit[key]) == {"from": read["fromVersion"],
                                                   "to": read["toVersion"]}
            stats = out["outputFacets"]["outputStatistics"]
            assert stats["size"] > 0 and stats["fileCount"] >= 1
            checked += 1
    assert checked > 20

    # Column lineage (from the Spark plans) and the suite's assertions.
    silver_out = next(o for e in events if e["job"]["name"] == "silver.orders"
                      and e["eventType"] == "START"
                      for o in e["outputs"] if o["name"].endswith("/silver/orders"))
    fields = silver_out["facets"]["columnLineage"]["fields"]
    assert [f["field"] for f in fields["amount"]["inputFields"]] == ["value"]
    assert [f["field"] for f in fields["_offset"]["inputFields"]] == ["offset"]
    gold_out = next(o for e in events if e["job"]["name"] == "gold.revenue_by_category_5m"
                    for o in e["outputs"] if "columnLineage" in o["facets"])
    revenue = gold_out["facets"]["columnLineage"]["fields"]["revenue"]["inputFields"]
    assert {(f["field"], f["transformations"][0]["subtype"]) for f in revenue} >= \
        {("amount", "AGGREGATION")}
    assertions = [a for e in events if e["job"]["name"] == "silver.orders.batch"
                  for i in e["inputs"] for a in i["inputFacets"]
                  .get("dataQualityAssertions", {}).get("assertions", [])]
    assert {"amount_in_range", "currency_iso_code"} <= {a["assertion"] for a in assertions}
    assert any(not a["success"] for a in assertions)  # run 1 had a broken record


def test_explain_rebuilds_an_earlier_gold_version_from_kafka_offsets(world: World,
                                                                     spark: SparkSession) -> None:
    config = load_config(world.config)
    name = "revenue_by_category_5m"
    version = world.revenue_version_after_run1  # type: ignore[attr-defined]
    uri = config.warehouse.table_uri("gold", name)
    then = DeltaTable(uri, version=version).to_pyarrow_table()
    assert then.num_rows
    assert not then.equals(DeltaTable(uri).to_pyarrow_table())  # later runs changed it

    result = explain(graph.build(config), f"gold.{name}", version)
    assert [h.table for h in result.hops] == [f"gold.{name}", "silver.orders", "bronze.orders"]
    ranges = result.version_offsets
    assert {r.range.topic for r in ranges} == {world.topics["orders"]}

    # Re-read exactly those records from bronze ...
    bronze = DeltaTable(config.warehouse.table_uri("bronze", "orders")).to_pyarrow_table(
        columns=["topic", "partition", "offset"])
    inside = pa.array([False] * bronze.num_rows)
    for r in (k.range for k in ranges):
        inside = pc.or_(inside, pc.and_(pc.equal(bronze["partition"], r.partition),
                                        pc.and_(pc.greater_equal(bronze["offset"], r.start),
                                                pc.less(bronze["offset"], r.end))))
    records = bronze.filter(inside)
    assert records.num_rows == sum(r.records for r in ranges)
    assert records.num_rows < bronze.num_rows  # later runs added more
    # ... take the silver rows they became, and aggregate them: that is the old version.
    silver = DeltaTable(config.warehouse.table_uri("silver", "orders")).to_pyarrow_table()
    coordinates = records.rename_columns(["_topic", "_partition", "_offset"])
    rows = silver.join(coordinates, ["_topic", "_partition", "_offset"], join_type="inner")
    assert 0 < rows.num_rows < silver.num_rows
    gold = next(t for t in discover_gold() if t.name == name)
    agg = load_gold_plan(graph.build(config), gold).agg
    frame = spark.createDataFrame(rows.select(silver.column_names))
    rebuilt = recompute(agg, frame).toArrow()
    check = compare(then, rebuilt, agg.output_keys, f"gold.{name}", version)
    assert check.equal, check.describe()

    # And the batch that made the version: its own ranges are within the whole version's.
    for r in (k.range for k in result.commit_offsets):
        whole = next(w.range for w in ranges if w.range.partition == r.partition)
        assert whole.start <= r.start <= r.end <= whole.end


def test_lineage_and_explain_commands(world: World) -> None:
    done = world.run("lineage")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "job bronze.orders" in done.stdout and "gold.revenue_by_category_5m" in done.stdout
    assert done.stdout.index("job silver.orders") < done.stdout.index(
        "job gold.revenue_by_category_5m")
    page = world.warehouse / "lineage.html"
    done = world.run("lineage", "--format", "html", "--output", str(page))
    assert done.returncode == 0 and page.read_text().count("<rect") >= 20
    version = world.revenue_version_after_run1  # type: ignore[attr-defined]
    done = world.run("explain", "gold.revenue_by_category_5m", "--version", str(version),
                     "--format", "json")
    assert done.returncode == 0, done.stderr[-2000:]
    offsets = json.loads(done.stdout)["version_offsets"]
    assert offsets and {"topic", "partition", "start", "end"} <= set(offsets[0]["range"])
    done = world.run("explain", "gold.revenue_by_category_5m", "--version", "0")
    assert done.returncode == 2 and "LH-LINEAGE-003" in done.stderr

    # Without a version: the latest. With --as-of: the version current at that instant.
    log = DeltaTable(str(world.warehouse / "gold" / "revenue_by_category_5m")).history()
    latest = max(int(c["version"]) for c in log)
    done = world.run("explain", "gold.revenue_by_category_5m", "--format", "json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["version"] == latest
    at = next(int(c["timestamp"]) for c in log if int(c["version"]) == version)
    after = datetime.fromtimestamp(at / 1000 + 0.0005, UTC).isoformat()  # before the next
    done = world.run("explain", "gold.revenue_by_category_5m", "--as-of", after,
                     "--format", "json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["version"] == version
