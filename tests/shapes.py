"""Event shapes for tests: the repository's sources, and a third one built from text."""

from __future__ import annotations

import functools
from pathlib import Path

from lakehouse.generator import EventShape, event_shape, load_shape
from lakehouse.quality.contract import parse_contract
from lakehouse.quality.rules import load_suite

ROOT = Path(__file__).resolve().parents[1]

PAYMENTS_CONTRACT = """\
name: payments
topic: shop.payments.v1
key: payment_id
event_time: paid_at
fields:
  payment_id:  {type: string, required: true}
  paid_at:     {type: timestamp, required: true}
  amount:      {type: "decimal(12,2)", required: true}
  method:      {type: string, required: true}
  currency:    {type: string, required: true}
  customer_id: {type: string, required: true, pii: true}
  note:        {type: string}
"""
PAYMENTS_SUITE = """\
{"name": "payments", "expectations": [
  {"type": "expect_column_values_to_be_between",
   "kwargs": {"column": "amount", "min_value": 0.01, "max_value": 100000},
   "meta": {"name": "amount_in_range"}},
  {"type": "expect_column_values_to_be_in_set",
   "kwargs": {"column": "method", "value_set": ["card", "bank_transfer", "wallet"]},
   "meta": {"name": "method_known"}},
  {"type": "expect_column_values_to_match_regex",
   "kwargs": {"column": "currency", "regex": "^[A-Z]{3}$"},
   "meta": {"name": "currency_iso_code"}}
]}
"""


@functools.cache
def shape(source: str) -> EventShape:
    """The shape of a source of the repository's ``expectations/`` folder."""
    return load_shape(ROOT / "expectations", source)


def payments_shape(folder: Path) -> EventShape:
    """The ``payments`` source (no hand-written maker): its suite written to ``folder``."""
    contract = parse_contract(PAYMENTS_CONTRACT, "payments.contract.yaml")
    path = folder / "payments.suite.json"
    path.write_text(PAYMENTS_SUITE)
    return event_shape(contract, load_suite(path, tuple(f.name for f in contract.fields)))
