"""`lakehouse contract check` against a git ref: what the level forbids fails, naming the
field and the rule; an allowed change passes (a real git repository, no JVM)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lakehouse.cli import main
from tests.conftest import ROOT

ADDED_OPTIONAL = '  coupon:         {type: string, default: "none"}\n'
ADDED_REQUIRED = "  coupon:         {type: string, required: true}\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding the project's contracts, committed, and a config using them."""
    shutil.copytree(ROOT / "expectations", tmp_path / "expectations")
    (tmp_path / "conf.yaml").write_text(yaml.safe_dump({
        "project": "p", "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "warehouse": {"root": str(tmp_path / "wh")},
        "silver": {"expectations_dir": str(tmp_path / "expectations")}}))
    for args in (["init", "-q"], ["add", "."],
                 ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "v1"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)
    return tmp_path


def edit(repo: Path, old: str, new: str) -> None:
    path = repo / "expectations" / "orders.contract.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def check(repo: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--conf", str(repo / "conf.yaml"), "contract", "check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_unchanged_and_allowed_changes_pass(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = check(repo, capsys)
    assert code == 0 and "orders: compatible with HEAD under BACKWARD" in out
    edit(repo, "  schema_version:", ADDED_OPTIONAL + "  schema_version:")
    code, out, _ = check(repo, capsys, "--compatibility", "FULL")
    assert code == 0 and "orders: compatible with HEAD under FULL" in out


def test_a_new_required_field_fails_naming_the_field_and_the_rule(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(repo, "  schema_version:", ADDED_REQUIRED + "  schema_version:")
    code, out, err = check(repo, capsys)
    assert code == 2 and "LH-CONTRACT-003" in err and "orders" in err
    assert "field coupon: added as string with no default" in out
    assert "(rule new_field_without_default)" in out
    assert "clickstream: compatible" in out


def test_a_removed_required_field_and_a_type_change_fail_under_full(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(repo, "  country:        {type: string, required: true, description: \"ISO 3166 "
               "alpha-2 code\"}\n", "")
    edit(repo, 'amount:         {type: "decimal(12,2)"', "amount:         {type: number")
    code, out, _ = check(repo, capsys, "--compatibility", "FULL")
    assert code == 2
    assert "field country: removed" in out and "(rule removed_field)" in out
    assert "field amount: type changed from decimal(12,2) to number" in out
    assert out.count("(rule type_changed)") == 1
    code, out, _ = check(repo, capsys)  # BACKWARD: a removed field reads no more; amount
    assert code == 2 and "country" not in out and "field amount" in out


def test_a_promotion_the_registry_allows_still_changes_silver_s_column(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(repo, "quantity:       {type: integer", "quantity:       {type: number")
    code, out, _ = check(repo, capsys)
    assert code == 2 and out.count("field quantity") == 1
    assert "from integer to number: silver's column keeps its type" in out


def test_a_ref_git_does_not_know_is_a_clear_error(repo: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = check(repo, capsys, "--against", "no-such-branch")
    assert code == 2 and "LH-CLI-001" in err and "no-such-branch" in err
    (repo / "expectations" / "payments.contract.yaml").write_text(
        (repo / "expectations" / "orders.contract.yaml").read_text().replace(
            "name: orders", "name: payments"))
    code, out, _ = check(repo, capsys)
    assert code == 0 and "payments: new (not in HEAD), nothing to compare" in out
