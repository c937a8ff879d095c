"""The pseudonym key and the keyed hash (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.config import parse_config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.privacy import pii_key, pseudonym
from lakehouse.quality.contract import load_contract

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"project": "p", "kafka": {"bootstrap_servers": "h:9092"},
           "warehouse": {"root": "/tmp/wh"}}


def test_the_pseudonym_is_hmac_sha256() -> None:
    # RFC 4231, test case 2
    assert pseudonym(b"Jefe", "what do ya want for nothing?") == \
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert pseudonym(b"k1", "c-1") != pseudonym(b"k2", "c-1")


def test_the_key_comes_from_the_environment_before_the_dev_key() -> None:
    local = parse_config({**MINIMAL, "privacy": {"dev_key": "dev"}})
    assert pii_key(local, env={}) == b"dev"
    assert pii_key(local, env={"LAKEHOUSE_PII_KEY": "prod"}) == b"prod"
    assert "dev" not in repr(local.privacy).replace("dev_key", "")
    with pytest.raises(LakehouseError) as err:
        pii_key(parse_config(MINIMAL), env={})
    assert err.value.code is ErrorCode.PII_KEY_MISSING
    assert "LAKEHOUSE_PII_KEY" in str(err.value)


def test_the_shipped_contracts_mark_personal_fields() -> None:
    orders = load_contract(ROOT / "expectations" / "orders.contract.yaml")
    clicks = load_contract(ROOT / "expectations" / "clickstream.contract.yaml")
    assert orders.pii_fields == ("customer_id",)
    assert clicks.pii_fields == ("user_id", "session_id")


def test_only_string_fields_can_be_pii(tmp_path: Path) -> None:
    path = tmp_path / "c.contract.yaml"
    path.write_text("key: id\nevent_time: at\nfields:\n  id: {type: string}\n"
                    "  at: {type: timestamp}\n  age: {type: integer, pii: true}\n")
    with pytest.raises(LakehouseError) as err:
        load_contract(path)
    assert err.value.code is ErrorCode.CONTRACT_INVALID and "only string" in str(err.value)
