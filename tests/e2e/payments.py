"""A third source added to a copy of the project, as the README's "Adding a source" says:
its contract and suite (``tests/shapes.py``) and one gold table; no bronze or silver file,
no config entry."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import ROOT
from tests.shapes import PAYMENTS_CONTRACT, PAYMENTS_SUITE

GOLD = '''\
"""Payments per day and method."""

from pyspark.sql import functions as F

from lakehouse.aggregates import Aggregate, Count, Sum
from lakehouse.registry import gold_table


@gold_table(silver="payments")
def payments_by_method_daily() -> Aggregate:
    """Payments and their amount per event date (UTC) and method."""
    return Aggregate(by={"event_date": F.col("event_date"), "method": F.col("method")},
                     measures={"payments": Count(), "amount": Sum("amount")})
'''


def project_with_payments(folder: Path) -> Path:
    """A copy of the project's definitions and contracts, with the payments source added;
    run the CLI with ``PYTHONPATH=<folder>`` and ``silver.expectations_dir`` pointing at
    ``<folder>/expectations``."""
    for part in ("bronze", "silver", "gold", "expectations"):
        shutil.copytree(ROOT / part, folder / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "expectations" / "payments.contract.yaml").write_text(PAYMENTS_CONTRACT)
    (folder / "expectations" / "payments.suite.json").write_text(PAYMENTS_SUITE)
    (folder / "gold" / "payments.py").write_text(GOLD)
    return folder


def payment(n: int, **changes: Any) -> dict[str, Any]:
    """A valid payment event, changed as given (``None`` drops a field)."""
    paid = datetime.now(UTC) - timedelta(minutes=10 + n)
    event = {"payment_id": f"p-{n}", "customer_id": f"c-{n % 3}",
             "paid_at": paid.isoformat(timespec="seconds").replace("+00:00", "Z"),
             "amount": 10 * n + 0.5, "currency": "EUR",
             "method": ("card", "bank_transfer", "wallet")[n % 3]}
    event.update(changes)
    return {k: v for k, v in event.items() if v is not None}
