"""Replay end to end on a real broker: after the suite changes, a silver replay moves
exactly the right records between silver and quarantine (into a side table first, then
in place, surviving a kill half way), the accounting identity still holds, and a gold
replay recomputes gold, after which the stream carries on from there. Replays take the
stream's silver batch path: a critical expectation stops them before anything is
written, and their Great Expectations results land in ``silver._quality``."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.batch import BRONZE_VERSIONS, RUN_ID
from lakehouse.io.delta_log import history
from tests.conftest import (
    ROOT,
    assert_chains_verified,
    assert_gold_verified,
    replay_here,
    run_pipelines,
)
from tests.e2e.test_silver_e2e import order, orders_accounting, record, run, setup

pytestmark = pytest.mark.integration

TABLES = ["orders", "gold.revenue_by_category_5m"]


def event_ids(warehouse: Path, name: str) -> list[str]:
    return DeltaTable(str(warehouse / "silver" / name)).to_pyarrow_table(
        columns=["event_id"]).column("event_id").to_pylist()


def test_replay_after_changing_the_suite(broker: str, tmp_path: Path, spark: SparkSession) -> None:
    from lakehouse.io.kafka_producer import produce
    suite_dir = tmp_path / "expectations"
    shutil.copytree(ROOT / "expectations", suite_dir)
    config, topic = setup(broker, tmp_path, silver={"expectations_dir": str(suite_dir)})
    warehouse = tmp_path / "warehouse"
    lower = [order(100 + n, currency="eur") for n in range(10)]   # quarantined today
    nine = [order(200 + n, quantity=9) for n in range(5)]         # valid today
    events = [order(n) for n in range(60)] + lower + nine + [order(5)]  # one redelivery
    produce(broker, topic, [record(e) for e in events] + [record(b"{x")])
    done = run_pipelines(config, spark, TABLES)
    assert done.returncode == 0, done.stderr[-3000:]
    before = orders_accounting(config)
    assert before.holds and before.quarantined == 11 and before.duplicates == 1

    # A suite whose critical rule rejects nearly every record stops the replay, as it
    # stops the stream: nothing is written, not even the ledger line.
    suite = suite_dir / "orders.suite.json"
    original = suite.read_text()
    suite.write_text(original.replace('"order_placed", ', ""))
    silver_version = DeltaTable(str(warehouse / "silver" / "orders")).version()
    ledger_version = DeltaTable(str(warehouse / "silver" / "_batches")).version()
    # The replays run on the suite's warm Spark session (replay_here), but for the
    # command's own process where it is the subject: its confirmation, a kill half way and
    # the restart after it, with the hint that gold must follow.
    stopped = replay_here(config, spark, "silver.orders")
    assert stopped.returncode == 2 and "LH-QUALITY-001" in stopped.stderr, stopped.stderr[-2000:]
    assert "event_type_known" in stopped.stderr
    assert DeltaTable(str(warehouse / "silver" / "orders")).version() == silver_version
    assert DeltaTable(str(warehouse / "silver" / "_batches")).version() == ledger_version

    # The contract owner accepts lower-case currencies and caps the quantity at 5.
    suite.write_text(original.replace('"^[A-Z]{3}$"', '"^[A-Za-z]{3}$"')
                     .replace('"max_value": 10000', '"max_value": 5'))

    side = replay_here(config, spark, "silver.orders", into="orders_v2")
    assert side.returncode == 0, side.stderr[-3000:]
    assert "10 moved quarantine -> silver, 5 silver -> quarantine" in side.stdout
    assert sorted(event_ids(warehouse, "orders_v2")) == sorted(
        {e["event_id"] for e in events} - {e["event_id"] for e in nine})
    assert sorted(i for i in event_ids(warehouse, "orders_v2_quarantine") if i) == \
        sorted(e["event_id"] for e in nine)
    assert orders_accounting(config) == before  # the table itself is untouched

    refused = run(config, "replay", "silver.orders")
    assert refused.returncode == 2 and "LH-CLI-002" in refused.stderr  # not confirmed
    killed = run(config, "replay", "silver.orders", "--yes",
                 crash_at="silver.orders:replay:after_delta_commit:0")
    assert killed.returncode != 0 and "crashing on purpose" in killed.stderr
    done = run(config, "replay", "silver.orders", "--yes")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming it" in done.stdout and "lakehouse replay gold.revenue_by_category_5m" \
        in done.stdout

    silver = event_ids(warehouse, "orders")
    assert len(silver) == len(set(silver)) == 60 + 10
    assert {e["event_id"] for e in lower} <= set(silver)
    quarantined = DeltaTable(str(warehouse / "silver" / "orders_quarantine")).to_pyarrow_table()
    assert sorted(r["event_id"] for r in quarantined.to_pylist() if r["event_id"]) == \
        sorted(e["event_id"] for e in nine)
    after = orders_accounting(config)
    assert after.holds, after.describe()
    assert (after.silver_rows, after.quarantined, after.duplicates) == (70, 6, 1)
    commit = history(DeltaTable(str(warehouse / "silver" / "orders")))[0]
    assert commit["operation"] == "WRITE" and commit["lakehouse.app_id"] == "silver.orders:replay"
    assert json.loads(commit[BRONZE_VERSIONS])["from"] == 0 and commit[RUN_ID]
    ledger = DeltaTable(str(warehouse / "silver" / "_batches")).to_pyarrow_table().to_pylist()
    rebuilds = [line for line in ledger if line["kind"] == "rebuild"]
    assert [(line["app_id"], line["batch_id"]) for line in rebuilds] == \
        [("silver.orders:replay", 0)]  # written once, though the replay ran twice
    quality = DeltaTable(str(warehouse / "silver" / "_quality")).to_pyarrow_table().to_pylist()
    quantity = [r for r in quality if r["app_id"] == "silver.orders:replay"
                and r["rule"] == "quantity_in_range"]
    assert [(r["batch_id"], r["unexpected_count"]) for r in quantity] == [(0, 5)]  # GX saw them

    # Gold from the replayed silver, then the stream carries on from there.
    done = replay_here(config, spark, "gold.revenue_by_category_5m")
    assert done.returncode == 0, done.stderr[-3000:]
    produce(broker, topic, [record(order(n)) for n in range(300, 305)])
    done = run_pipelines(config, spark, TABLES)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "continuing from version" in done.stdout
    assert_gold_verified(config, spark, ["gold.revenue_by_category_5m"])
    gold = DeltaTable(str(warehouse / "gold" / "revenue_by_category_5m")).to_pyarrow_table()
    placed = Counter(e["event_type"] for e in events if e["event_id"] not in
                     {x["event_id"] for x in nine})
    assert sum(gold.column("orders").to_pylist()) == placed["order_placed"] - 1 + 5  # -dup
    assert orders_accounting(config).holds
    # A second replay of gold is a batch of its own: it is written, not skipped.
    again = replay_here(config, spark, "gold.revenue_by_category_5m")
    assert again.returncode == 0, again.stderr[-3000:]
    replays = [int(c["lakehouse.batch_id"]) for c in history(
        DeltaTable(str(warehouse / "gold" / "revenue_by_category_5m")))
        if c.get("lakehouse.app_id") == "gold.revenue_by_category_5m:replay"]
    assert sorted(replays) == [0, 1]
    assert_gold_verified(config, spark, ["gold.revenue_by_category_5m"])
    assert_chains_verified(config, spark)  # replaces and side tables linked like appends


def test_bronze_reset_lands_only_what_is_missing(broker: str, tmp_path: Path,
                                                 spark: SparkSession) -> None:
    from lakehouse.generator import Record
    from lakehouse.io.kafka_admin import metadata_consumer, watermarks
    from lakehouse.io.kafka_producer import produce
    topic = f"orders.{tmp_path.name}"
    from lakehouse.io.kafka_admin import TopicSpec, ensure_topics
    # As many partitions as the test config gives the source (a run grows the topic to
    # that): Spark's Kafka source needs an offset for every partition in startingOffsets.
    partitions = range(6)
    ensure_topics(broker, [TopicSpec(topic, len(partitions))])
    events = [order(n) for n in range(60)]
    produce(broker, topic, [Record(f"k{n}".encode(), json.dumps(e).encode(), ())
                            for n, e in enumerate(events)])
    consumer = metadata_consumer(broker)
    marks = watermarks(consumer, topic, partitions)
    consumer.close()
    half = {str(p): high // 2 for p, (_, high) in marks.items()}
    # A bronze table that started late: it holds only the second half of each partition.
    config, _ = setup(broker, tmp_path, starting_offsets=json.dumps({topic: half}))
    warehouse = tmp_path / "warehouse"
    done = run_pipelines(config, spark, ["bronze.orders"])
    assert done.returncode == 0, done.stderr[-3000:]
    bronze = warehouse / "bronze" / "orders"
    held = DeltaTable(str(bronze)).to_pyarrow_table().num_rows
    assert held == 60 - sum(int(o) for o in half.values())

    done = run(config, "replay", "bronze.orders", "--from-offsets",
               json.dumps({str(p): 0 for p in partitions}), "--yes")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{60 - held} missing records landed" in done.stdout
    rows = DeltaTable(str(bronze)).to_pyarrow_table(columns=["partition", "offset"]).to_pylist()
    assert len(rows) == len({(r["partition"], r["offset"]) for r in rows}) == 60
    again = run(config, "replay", "bronze.orders", "--from-time", "2000-01-01T00:00:00Z", "--yes")
    assert again.returncode == 0 and "0 missing records landed" in again.stdout

    done = run_pipelines(config, spark, ["orders"])  # silver picks up the landed records like any others
    assert done.returncode == 0, done.stderr[-3000:]
    acc = orders_accounting(config)
    assert acc.holds and acc.bronze_rows == acc.silver_rows == 60
