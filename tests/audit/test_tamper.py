"""Tamper evidence on real tables: the pipelines (a real broker, Spark, Delta) link every
commit in its table's chain; ``lakehouse audit verify`` recomputes the chain from the log
and the data files, passes on the untouched warehouse, and names the version of each kind
of tampering done to a copy of a table: a data file overwritten with other rows of the
same schema, a data file deleted, a commit by plain Spark, a log entry edited."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from lakehouse.audit.integrity import verify_uri
from lakehouse.io.chain import links
from lakehouse.io.delta import read_table
from lakehouse.io.digest import RowsDigest, digest_columns
from tests.conftest import lakehouse
from tests.e2e.gold_world import BASE, World, click, order

GOLD = "revenue_by_category_5m"


@pytest.fixture(scope="module")
def world(broker: str, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> World:
    w = World(broker, tmp_path_factory.mktemp("tamper"))
    for first in (0, 20):  # two runs: several versions per table
        w.send([order(n, BASE) for n in range(first, first + 20)] + [b"{not json"],
               [click(n, "u1", "s1", BASE) for n in range(first, first + 5)])
        assert (run := w.run_here(spark)).returncode == 0, run.stderr[-3000:]
    return w


def copy_of(w: World, layer: str, name: str, tmp_path: Path) -> str:
    target = tmp_path / name
    shutil.copytree(w.warehouse / layer / name, target)
    return str(target)


def adding(uri: str) -> list[tuple[int, list[str]]]:
    """(version, files it added) of each version that added files, oldest first."""
    out = []
    for log in sorted(Path(uri, "_delta_log").glob("*.json")):
        acts = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if files := [a["add"]["path"] for a in acts if "add" in a]:
            out.append((int(log.name[:20]), files))
    return out


def break_of(uri: str) -> tuple[int, str] | None:
    found = verify_uri("copy", uri, 168).broken
    return None if found is None else (found.version, found.kind)


def test_every_table_verifies_and_gold_records_its_whole_content(
        world: World, spark: SparkSession) -> None:
    run = lakehouse(world.config, "audit", "verify", "--format", "json")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout[run.stdout.index("["):])
    names = {r["table"] for r in rows}
    assert {"bronze.orders", "silver.orders", "silver.orders_quarantine",
            "silver._batches", "silver._quality", f"gold.{GOLD}",
            "_system.rules"} <= names, names
    assert all(r["verified"] == "yes" for r in rows), rows
    gold = str(world.warehouse / "gold" / GOLD)
    chain = links(gold)
    latest = max(chain)
    table = read_table(spark, gold)
    now = RowsDigest.of(table.agg(*digest_columns(table.schema)).first().asDict())
    assert chain[latest].content == now.text() and now.rows == table.count() > 0
    bronze = links(str(world.warehouse / "bronze" / "orders"))
    assert sum(RowsDigest.parse(link.rows).rows for link in bronze.values()) == 42


@pytest.mark.parametrize("checksum", ["kept", "removed"])
def test_a_data_file_overwritten_with_other_rows_breaks_at_its_version(
        world: World, tmp_path: Path, checksum: str) -> None:
    """Hadoop's ``.crc`` beside a local file makes Spark refuse to read it: a careful
    writer removes it too. Either way the rows are not the ones linked."""
    uri = copy_of(world, "silver", "orders", tmp_path)
    version, files = adding(uri)[-1]
    path = Path(uri, files[0])
    rows = pq.read_table(path)
    column = rows.schema.names.index("amount")
    field = rows.schema.field(column)
    pq.write_table(rows.set_column(column, field,
                                   pc.add(rows.column(column), 1).cast(field.type)), path)
    if checksum == "removed":
        path.with_name(f".{path.name}.crc").unlink()
    assert break_of(uri) == (version, "rows")


def test_a_data_file_deleted_breaks_at_the_version_that_added_it(
        world: World, tmp_path: Path) -> None:
    uri = copy_of(world, "bronze", "orders", tmp_path)
    version, files = adding(uri)[0]
    Path(uri, files[0]).unlink()
    assert break_of(uri) == (version, "deleted")


def test_a_commit_by_plain_spark_breaks_at_its_version(
        world: World, spark: SparkSession, tmp_path: Path) -> None:
    uri = copy_of(world, "gold", GOLD, tmp_path)
    latest = max(int(p.name[:20]) for p in Path(uri, "_delta_log").glob("*.json"))
    read_table(spark, uri).limit(1).write.format("delta").mode("append").save(uri)
    assert break_of(uri) == (latest + 1, "foreign")


def test_an_edited_log_entry_breaks_at_its_version(world: World, tmp_path: Path) -> None:
    uri = copy_of(world, "silver", "orders_quarantine", tmp_path)
    version, _ = adding(uri)[0]
    log = Path(uri, "_delta_log", f"{version:020d}.json")
    log.write_text(log.read_text().replace('"numOutputRows":"', '"numOutputRows":"1'))
    assert break_of(uri) == (version, "edited")


def test_verify_names_the_table_and_version_with_its_code(world: World) -> None:
    uri = world.warehouse / "gold" / GOLD
    version = max(int(p.name[:20]) for p in (uri / "_delta_log").glob("*.json"))
    log = uri / "_delta_log" / f"{version:020d}.json"
    log.write_text(log.read_text().replace('"operation":"', '"operation":"X'))
    run = lakehouse(world.config, "audit", "verify", f"gold.{GOLD}", "bronze.orders")
    assert run.returncode != 0
    assert "LH-AUDIT-004" in run.stderr and f"gold.{GOLD} breaks at version {version}: " \
        "edited" in run.stderr, run.stderr[-2000:]
    assert "bronze.orders: verified" in run.stdout
