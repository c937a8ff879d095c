"""``lakehouse forget``: a subject's records are erased from bronze, silver and quarantine
of both sources, gold is recomputed, and after the vacuum the subject is in no current
table and no retained version; the accounting still holds and the pipelines go on."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.config import load_config
from lakehouse.graph import Layer, build
from lakehouse.layers.ledger import accounting
from lakehouse.privacy import pseudonym
from tests.conftest import assert_chains_verified, assert_gold_verified, lakehouse
from tests.e2e.gold_world import BASE, World, click, order

pytestmark = pytest.mark.integration
SUBJECT = "c-2"
DEV_KEY = b"tests-only-not-a-secret"  # tests/conftest.py's privacy.dev_key


def cells(path: Path) -> set[str]:
    """Every string and binary value of a Parquet file, as text."""
    table = pq.read_table(path)
    out: set[str] = set()
    for column in table.columns:
        for value in column.to_pylist():
            if isinstance(value, bytes):
                out.add(value.decode(errors="replace"))
            elif isinstance(value, str):
                out.add(value)
    return out


def test_a_forgotten_subject_is_gone_from_every_table_and_version(
        broker: str, tmp_path: Path, spark: SparkSession) -> None:
    w = World(broker, tmp_path)
    orders = [order(n, BASE) for n in range(20)]  # customers c-0 .. c-4
    bad = order(100, BASE, amount="-5")
    bad["customer_id"] = SUBJECT  # quarantined (amount out of range)
    malformed = b'{"event_id": "o-101", "customer_id": "' + SUBJECT.encode() + b'", '
    clicks = [click(n, f"c-{2 + n % 2}", f"s-c-{2 + n % 2}", BASE) for n in range(6)]
    w.send([*orders, orders[2], bad, malformed], clicks)  # orders[2]: a redelivery
    assert (run := w.run_here(spark)).returncode == 0, run.stderr[-3000:]
    pseudo = pseudonym(DEV_KEY, SUBJECT)
    silver = DeltaTable(str(w.warehouse / "silver" / "orders")).to_pyarrow_table().to_pylist()
    assert pseudo in {r["customer_id"] for r in silver}  # pseudonymised, not raw
    assert not {r["customer_id"] for r in silver} & {f"c-{n}" for n in range(5)}

    refused = lakehouse(w.config, "forget", "--subject", SUBJECT)  # no terminal, no --yes
    assert refused.returncode == 2 and "LH-CLI-002" in refused.stderr
    assert "time travel" in refused.stdout
    done = lakehouse(w.config, "forget", "--subject", SUBJECT, "--yes")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bronze.orders: 7 rows erased" in done.stdout  # 4 events, a redelivery, 2 bad
    assert "silver.orders: 4 rows erased" in done.stdout
    assert "silver.orders_quarantine: 2 rows erased" in done.stdout
    assert "silver.clickstream: 3 rows erased" in done.stdout
    assert SUBJECT not in done.stdout + done.stderr

    # Nowhere: not in any data file left on disk (every version still readable is made of
    # these), not in any Delta log, lineage or checkpoint file.
    # The audit record alone holds the pseudonym (not the id).
    audit_dir = w.warehouse / "_system" / "forgotten"
    files = [p for p in w.warehouse.rglob("*") if p.is_file() and audit_dir not in p.parents]
    parquet = [p for p in files if p.suffix == ".parquet"]
    assert parquet
    for path in parquet:
        found = {c for c in cells(path) if c in (pseudo, SUBJECT) or f'"{SUBJECT}"' in c}
        assert not found, f"{path}: {found}"
    for path in files:
        if path.suffix != ".parquet":
            assert f'"{SUBJECT}"'.encode() not in path.read_bytes(), path
    for table in ("bronze/orders", "silver/orders", "silver/orders_quarantine"):
        ended = []
        for version in range(DeltaTable(str(w.warehouse / table)).version() + 1):
            try:
                rows = DeltaTable(str(w.warehouse / table), version=version).to_pyarrow_table()
            except Exception:  # its files were vacuumed: time travel there has ended
                ended.append(version)
                continue
            text = {str(v) for c in rows.columns for v in c.to_pylist()}
            assert pseudo not in text and not [t for t in text if f'"{SUBJECT}"' in t], \
                (table, version)
        assert ended, f"{table}: every earlier version is still readable"

    audit = DeltaTable(str(w.warehouse / "_system" / "forgotten")).to_pyarrow_table().to_pylist()
    assert {r["table"]: r["rows"] for r in audit}["bronze.orders"] == 7
    assert {r["subject_pseudonym"] for r in audit} == {pseudo} and all(r["by"] for r in audit)

    pipeline = build(load_config(w.config))
    for query in pipeline.layer(Layer.SILVER):
        check = accounting(pipeline, query.definition)
        assert check.holds, check.describe()
    assert_gold_verified(w.config, spark)
    # The erasure is no break in any chain: the files it deleted are listed as erased.
    chains = assert_chains_verified(w.config, spark)
    for table in ("bronze.orders", "silver.orders", "silver.orders_quarantine"):
        assert {f.kind for f in chains[table].accounted} == {"erased"}, table
    shown = lakehouse(w.config, "audit", "verify", "bronze.orders")
    assert shown.returncode == 0 and "erased: rows erased by forget" in shown.stdout, \
        shown.stderr[-2000:]

    # The pipelines go on, from where they were.
    w.send([order(n, BASE) for n in range(20, 25)], [click(9, "c-4", "s-c-4", BASE)])
    assert (run := w.run_here(spark)).returncode == 0, run.stderr[-3000:]
    silver = DeltaTable(str(w.warehouse / "silver" / "orders")).to_pyarrow_table().to_pylist()
    assert sorted(r["event_id"] for r in silver) == sorted(
        f"o-{n}" for n in range(25) if n % 5 != 2 or n >= 20)
    for query in pipeline.layer(Layer.SILVER):
        check = accounting(pipeline, query.definition)
        assert check.holds, check.describe()
    assert_gold_verified(w.config, spark)
    assert_chains_verified(w.config, spark)


def test_an_avro_record_naming_the_subject_is_found_readable_or_not(  # type: ignore[no-untyped-def]
        spark, tmp_path: Path) -> None:
    """Forget's match in raw values, for an Avro source: the subject as an Avro string
    (length prefix and bytes), in a record that decodes or one that does not."""
    import dataclasses
    import io
    import json
    import random
    from datetime import UTC, datetime

    import fastavro
    from pyspark.sql import functions as F

    from lakehouse.audit.forget import in_raw
    from lakehouse.generator import order_event
    from lakehouse.io.schema_registry import SchemaRegistry
    from lakehouse.layers.routing import AvroSource, load_plan
    from lakehouse.quality.avro import avro_schema, avro_string, to_datum
    from tests.conftest import write_config

    config = load_config(write_config(tmp_path / "conf.yaml", "127.0.0.1:1", tmp_path / "wh"))
    pipeline = build(config)
    plan = load_plan(pipeline, pipeline.query("silver.orders").definition)
    plan = dataclasses.replace(plan, avro=AvroSource(
        SchemaRegistry("http://127.0.0.1:1"), "s-value", json.dumps(avro_schema(plan.contract))))

    def value(customer: str) -> bytes:
        event = {**order_event(random.Random(1), datetime.now(UTC)), "customer_id": customer}
        out = io.BytesIO()
        fastavro.schemaless_writer(out, fastavro.parse_schema(avro_schema(plan.contract)),
                                   to_datum(event, plan.contract))
        return b"\x00\x00\x00\x00\x01" + out.getvalue()

    rows = [(0, value("c-000042")), (1, value("c-000042")[:-4]), (2, value("c-0000421")),
            (3, value("c-000043")), (4, None), (5, b'{"customer_id": "c-000042"}')]
    df = spark.createDataFrame(rows, "i int, value binary").select(
        "i", F.col("value").alias("v"), F.lit("c-000042").alias("subject"),
        F.lit(avro_string("c-000042")).alias("encoded"))
    found = {r["i"] for r in df.filter(in_raw(plan, F.col("v"), F.col("subject"),
                                              F.col("encoded"))).collect()}
    assert found == {0, 1, 5}  # not a longer id holding it; JSON sent to the Avro topic too
    assert avro_string("é" * 64)[:2] == bytes([0x80, 0x02])  # 128 bytes: a 2-byte varint
