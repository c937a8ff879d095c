"""A third source, added as the README says, runs end to end beside the built-in ones:
one's own events from a file (valid, invalid, redelivered, malformed), silver, the
quarantine with each record's key, the accounting line, and its gold table."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable

from lakehouse.io.kafka_admin import admin_client, list_topics
from tests.conftest import lakehouse, write_config
from tests.e2e.payments import payment, project_with_payments

pytestmark = pytest.mark.integration


def test_a_source_added_with_a_contract_a_suite_and_a_gold_file(
        broker: str, tmp_path: Path) -> None:
    project = project_with_payments(tmp_path / "project")
    warehouse = tmp_path / "wh"
    config = write_config(tmp_path / "conf.yaml", broker, warehouse,
                          silver={"expectations_dir": str(project / "expectations")})
    doc = yaml.safe_load(config.read_text())
    # This deployment runs only the new source: the others' tables are skipped, said so.
    doc["sources"] = {"orders": {"enabled": False}, "clickstream": {"enabled": False}}
    config.write_text(yaml.safe_dump(doc))

    # Nothing to send: a clear error, and no topic created.
    missing = lakehouse(config, "produce", "payments", "--from", str(tmp_path / "nope.jsonl"),
                        project=project)
    assert missing.returncode != 0 and "LH-CLI-001" in missing.stderr
    assert "no such file" in missing.stderr and "hint:" in missing.stderr
    topics = list_topics(admin_client(broker, {}), broker)
    assert "shop.payments.v1" not in topics

    good = [payment(n) for n in range(1, 7)]
    lines = [json.dumps(e) for e in good]
    lines += [json.dumps(good[0]),                          # redelivered
              json.dumps(payment(7, method="cash")),        # breaks the suite
              json.dumps(payment(8, amount="12.50")),       # wrong type
              json.dumps(payment(9, customer_id=None)),     # missing required field
              '{"payment_id": "p-10", "amount": ']          # not JSON
    events = tmp_path / "payments.jsonl"
    events.write_text("\n".join(lines) + "\n")
    sent = lakehouse(config, "produce", "payments", "--from", str(events), project=project)
    assert sent.returncode == 0, sent.stderr
    assert "produced 11 payments events (json) to shop.payments.v1" in sent.stdout

    run = lakehouse(config, "run", "--until-idle", project=project)
    assert run.returncode == 0, run.stderr[-3000:]
    assert ("warning: skipping bronze.clickstream, silver.clickstream, gold.active_users_1m, "
            "gold.sessions_daily: source 'clickstream' is disabled") in run.stdout
    assert ("silver.payments: bronze 11 = silver 6 + quarantined 4 + duplicates 1 (holds)"
            in run.stdout), run.stdout

    silver = DeltaTable(str(warehouse / "silver" / "payments")).to_pyarrow_table()
    assert sorted(silver.column("payment_id").to_pylist()) == [f"p-{n}" for n in range(1, 7)]
    assert "event_date" in silver.column_names
    quarantine = DeltaTable(str(warehouse / "silver" / "payments_quarantine")) \
        .to_pyarrow_table().to_pylist()
    by_key = {r["event_id"]: r["failed_rules"] for r in quarantine}
    assert set(by_key) == {"p-7", "p-8", "p-9", None}  # the malformed line has no key
    assert by_key["p-7"] == ["expect.method_known"]

    gold = DeltaTable(str(warehouse / "gold" / "payments_by_method_daily")).to_pyarrow_table()
    totals: dict[str, tuple[int, Decimal]] = {}
    for row in gold.to_pylist():
        n, amount = totals.get(row["method"], (0, Decimal(0)))
        totals[row["method"]] = (n + row["payments"], amount + row["amount"])
    expected: dict[str, tuple[int, Decimal]] = {}
    for e in good:
        n, amount = expected.get(e["method"], (0, Decimal(0)))
        expected[e["method"]] = (n + 1, amount + Decimal(str(e["amount"])))
    assert totals == expected

    shown = lakehouse(config, "quarantine", "show", "payments", project=project)
    assert shown.returncode == 0 and "payment_id=p-7" in shown.stdout

    skipped = lakehouse(config, "run", "--until-idle", "--table", "silver.orders", project=project)
    assert skipped.returncode != 0 and "LH-DEF-004" in skipped.stderr
    assert "sources.orders.enabled: true" in skipped.stderr
