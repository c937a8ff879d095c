"""``lakehouse query`` on a real warehouse (Delta tables written by delta-spark, appends
and MERGE, as the pipelines write them), every output format, clear errors; and the same
tables from pandas and Spark."""

from __future__ import annotations

import csv
import json
import subprocess
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from lakehouse.catalog import read_pandas, register_views, spark_sql
from lakehouse.config import load_config
from tests.conftest import lakehouse, write_config

pytestmark = pytest.mark.integration

REVENUE = pa.table({
    "window_start": pa.array([datetime(2026, 11, 20, 18, 0, tzinfo=UTC),
                              datetime(2026, 11, 20, 18, 5, tzinfo=UTC),
                              datetime(2026, 11, 20, 18, 0, tzinfo=UTC)],
                             pa.timestamp("us", tz="UTC")),
    "category": ["books", "books", "文具"],
    "orders": pa.array([3, 1, 2], pa.int64()),
    "net_revenue": pa.array([Decimal("30.50"), Decimal("7.00"), Decimal("-3.25")],
                            pa.decimal128(23, 2)),
})


@pytest.fixture(scope="module")
def conf(tmp_path_factory: pytest.TempPathFactory, spark: SparkSession) -> Path:
    from delta.tables import DeltaTable
    root = tmp_path_factory.mktemp("query")
    warehouse = root / "warehouse"
    gold = str(warehouse / "gold" / "revenue_by_category_5m")
    schema = "window_start timestamp, category string, orders long, net_revenue decimal(23,2)"
    rows = [tuple(r.values()) for r in REVENUE.to_pylist()]
    spark.createDataFrame(rows[:2], schema).write.format("delta").save(gold)
    # The last row arrives by MERGE, as the gold engine writes.
    (DeltaTable.forPath(spark, gold).alias("t")
     .merge(spark.createDataFrame(rows[2:], schema).alias("s"),
            "t.window_start = s.window_start AND t.category = s.category")
     .whenNotMatchedInsertAll().execute())
    silver = spark.createDataFrame(
        [("e1", "DE", date(2026, 11, 20)), ("e2", "FR", date(2026, 11, 21)),
         ("e3", "DE", date(2026, 11, 21))], "event_id string, country string, event_date date")
    silver.write.format("delta").partitionBy("event_date").save(str(warehouse / "silver" / "orders"))
    return write_config(root / "conf.yaml", "127.0.0.1:1", warehouse)


def query(conf: Path, *args: str) -> subprocess.CompletedProcess:
    return lakehouse(conf, "query", *args, timeout=120)


SQL = ("SELECT category, sum(orders) AS orders, sum(net_revenue) AS net_revenue "
       "FROM gold.revenue_by_category_5m WHERE category = '文具' OR category = 'books' "
       "GROUP BY category ORDER BY category")


def test_aligned_table_over_gold(conf: Path) -> None:
    done = query(conf, SQL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "category | orders | net_revenue",
        "---------+--------+------------",
        "books    |      4 |       37.50",
        "文具     |      2 |       -3.25",
        "2 rows"]


def test_csv_json_and_parquet_outputs(conf: Path, tmp_path: Path) -> None:
    done = query(conf, SQL, "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert list(csv.reader(done.stdout.splitlines())) == [
        ["category", "orders", "net_revenue"], ["books", "4", "37.50"], ["文具", "2", "-3.25"]]

    out = tmp_path / "r.json"
    done = query(conf, SQL, "--format", "json", "--output", str(out))
    assert done.returncode == 0 and "2 rows ->" in done.stdout, done.stderr
    assert json.loads(out.read_text()) == [
        {"category": "books", "orders": 4, "net_revenue": 37.5},
        {"category": "文具", "orders": 2, "net_revenue": -3.25}]

    out = tmp_path / "r.parquet"
    done = query(conf, "SELECT * FROM gold.revenue_by_category_5m ORDER BY window_start, "
                       "category", "--format", "parquet", "--output", str(out))
    assert done.returncode == 0, done.stderr
    back = pq.read_table(out)
    assert back.num_rows == 3 and back.column("category").to_pylist() == ["books", "文具", "books"]
    assert back.column("net_revenue").to_pylist()[1] == Decimal("-3.25")
    # Spark writes timestamps as INT96; they come back as the table's UTC timestamps.
    assert back.schema.field("window_start").type == pa.timestamp("us", tz="UTC")
    assert back.column("window_start").to_pylist()[0] == datetime(2026, 11, 20, 18, tzinfo=UTC)


def test_partitioned_silver_reads_partition_values(conf: Path) -> None:
    done = query(conf, "SELECT event_date, count(*) AS n FROM silver.orders "
                       "WHERE country = 'DE' GROUP BY 1 ORDER BY 1", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"event_date": "2026-11-20", "n": 1},
                                       {"event_date": "2026-11-21", "n": 1}]


def test_unknown_table_lists_the_tables(conf: Path) -> None:
    done = query(conf, "SELECT * FROM gold.revenue_by_categroy_5m")
    assert done.returncode == 2
    assert "LH-QUERY-001" in done.stderr and "gold.revenue_by_categroy_5m" in done.stderr
    assert "gold.revenue_by_category_5m" in done.stderr and "silver.orders" in done.stderr
    bad = query(conf, "SELECT nope FROM gold.revenue_by_category_5m")
    assert bad.returncode == 2 and "LH-QUERY-002" in bad.stderr and "nope" in bad.stderr
    bare = query(conf, "SELECT * FROM orders")
    assert bare.returncode == 2 and "LH-QUERY-002" in bare.stderr and "silver.orders" in bare.stderr


def test_pandas_and_spark_read_the_same_tables(conf: Path, spark: SparkSession) -> None:
    config = load_config(conf)
    frame = read_pandas("gold.revenue_by_category_5m", config)
    assert sorted(frame.category) == ["books", "books", "文具"]
    views = register_views(spark, config)
    assert views == ["silver_orders", "gold_revenue_by_category_5m"]
    rows = spark_sql(spark, SQL, config).collect()
    assert [(r.category, r.orders, r.net_revenue) for r in rows] == [
        ("books", 4, Decimal("37.50")), ("文具", 2, Decimal("-3.25"))]
    assert spark.table("silver_orders").where("event_date = '2026-11-21'").count() == 2
