"""The rules in force: content hashes every silver-side commit records, and the archive
that keeps the files in the warehouse (a real Delta table on disk, written by delta-rs)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from lakehouse.io.delta_log import open_table
from lakehouse.quality.in_force import (
    _ARCHIVED,
    CONTRACT_SHA256,
    PROJECT_VERSION,
    RulesInForce,
    archive,
    archived,
)

ROOT = Path(__file__).resolve().parents[2]


def rules(tmp_path: Path, suite_text: str = '{"name": "orders"}') -> RulesInForce:
    (tmp_path / "c.contract.yaml").write_text("name: orders\n", encoding="utf-8")
    (tmp_path / "c.suite.json").write_text(suite_text, encoding="utf-8")
    return RulesInForce.read(tmp_path / "c.contract.yaml", tmp_path / "c.suite.json")


def test_each_commit_records_the_hashes_of_the_files_it_routed_with(tmp_path: Path) -> None:
    shipped = RulesInForce.read(ROOT / "expectations" / "orders.contract.yaml",
                                ROOT / "expectations" / "orders.suite.json")
    data = (ROOT / "expectations" / "orders.suite.json").read_bytes()
    assert shipped.suite.sha256 == hashlib.sha256(data).hexdigest()
    assert shipped.suite.text == data.decode() and shipped.contract.kind == "contract"
    meta = shipped.metadata()
    assert meta[CONTRACT_SHA256] == shipped.contract.sha256 and meta[PROJECT_VERSION]
    assert rules(tmp_path).suite.sha256 != rules(tmp_path, '{"name": "x"}').suite.sha256


def test_the_archive_keeps_each_file_once(tmp_path: Path) -> None:
    uri = str(tmp_path / "_system" / "rules")
    (tmp_path / "a").mkdir()
    first = rules(tmp_path / "a")
    archive(first, uri, {})
    _ARCHIVED.clear()  # as another process would: the table itself holds the pair once
    archive(first, uri, {})
    (tmp_path / "b").mkdir()
    second = rules(tmp_path / "b", '{"name": "orders", "expectations": []}')
    archive(second, uri, {})
    table = open_table(uri, {})
    assert table is not None and table.to_pyarrow_table().num_rows == 4  # 2 pairs, 2 files
    found = archived(uri, {}, [first.suite.sha256, second.suite.sha256, "0" * 64])
    assert set(found) == {first.suite.sha256, second.suite.sha256}
    assert found[second.suite.sha256].text == '{"name": "orders", "expectations": []}'
