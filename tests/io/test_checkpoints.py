"""Damaged checkpoints are found before Spark starts, and moved aside."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.io.checkpoints import (
    damage,
    delta_batch_versions,
    entry_problem,
    has_checkpoint,
    move_aside,
    remove_unstarted,
)

OFFSETS = ('v1\n{"batchWatermarkMs":0,"batchTimestampMs":1,"conf":{}}\n'
           '{"shop.orders.v1":{"0":12,"1":9}}')
COMMIT = 'v1\n{"nextBatchWatermarkMs":0}'


@pytest.mark.parametrize(("text", "log", "problem"), [
    (OFFSETS, "offsets", None),
    (COMMIT, "commits", None),
    ('v1\n{"batchWatermarkMs":0}\n-\n{"reservoirVersion":3}', "offsets", None),
    ("", "offsets", "is empty"),
    ("\n", "commits", "is empty"),
    ("v1", "commits", "ends after its version line"),
    ('{"nextBatchWatermarkMs":0}', "commits", "does not start with a log version line"),
    (OFFSETS[:-9], "offsets", "line 3 is not JSON"),
    ("v1\n-", "commits", "line 2 is not JSON"),
])
def test_entry_problem(text: str, log: str, problem: str | None) -> None:
    found = entry_problem(text, log)
    assert found == problem if problem is None else (found or "").startswith(problem)


def _checkpoint(root: Path, offsets: int = 3, commits: int = 3) -> Path:
    (root / "offsets").mkdir(parents=True)
    (root / "commits").mkdir()
    (root / "metadata").write_text('{"id":"8c3c1f0e-0000-4000-8000-000000000000"}')
    for n in range(offsets):
        (root / "offsets" / str(n)).write_text(OFFSETS)
    for n in range(commits):
        (root / "commits" / str(n)).write_text(COMMIT)
    return root


def test_a_sound_checkpoint_or_none_has_no_damage(tmp_path: Path) -> None:
    assert damage(str(tmp_path / "absent")) is None
    (tmp_path / "new").mkdir()
    assert damage(str(tmp_path / "new")) is None
    assert damage(str(_checkpoint(tmp_path / "ok", offsets=4, commits=3))) is None


def test_damage_names_the_file(tmp_path: Path) -> None:
    cp = _checkpoint(tmp_path / "a")
    (cp / "offsets" / "2").write_text("")
    assert damage(str(cp)) == "offsets/2 is empty"
    cp = _checkpoint(tmp_path / "b")
    (cp / "commits" / "2").write_text("v1\n{broken")
    assert damage(str(cp)) == "commits/2 line 2 is not JSON ('{broken')"
    cp = _checkpoint(tmp_path / "c")
    (cp / "metadata").unlink()
    assert damage(str(cp)) == "its metadata file (the query id) is missing"
    cp = _checkpoint(tmp_path / "d")
    (cp / "metadata").write_text("{")
    assert damage(str(cp)) == "its metadata file is not the query id JSON"
    cp = _checkpoint(tmp_path / "e", offsets=2, commits=3)
    assert damage(str(cp)) == "commits/2 has no offsets entry"


def test_move_aside_keeps_the_old_checkpoint(tmp_path: Path) -> None:
    cp = _checkpoint(tmp_path / "silver.orders")
    aside = move_aside(str(cp), "reset")
    assert aside is not None and not cp.exists()
    assert Path(aside).name.startswith("silver.orders.reset-")
    assert (Path(aside) / "commits" / "2").read_text() == COMMIT
    assert move_aside(str(cp), "reset") is None


def test_a_checkpoint_without_an_offsets_entry_holds_no_progress_and_is_removed(
        tmp_path: Path) -> None:
    for root in (str(tmp_path), f"file://{tmp_path}"):
        assert not has_checkpoint(f"{root}/absent") and not remove_unstarted(f"{root}/absent")
    killed = _checkpoint(tmp_path / "killed", offsets=0, commits=0)
    (killed / "offsets" / ".0.5d1f2b7e.tmp").write_text("v1\n")  # a write cut short
    (killed / "state").mkdir()
    assert not has_checkpoint(str(killed)) and damage(str(killed)) is None
    assert remove_unstarted(str(killed)) and not killed.exists()
    started = _checkpoint(tmp_path / "started", offsets=1, commits=0)
    assert has_checkpoint(f"file://{started}")
    assert not remove_unstarted(str(started)) and (started / "offsets" / "0").exists()


def test_a_stream_batch_spans_the_versions_of_its_offsets(tmp_path: Path) -> None:
    offsets = tmp_path / "offsets"
    offsets.mkdir()
    for batch, version in ((0, 3), (1, 7)):
        (offsets / str(batch)).write_text(
            'v1\n{"batchWatermarkMs":0,"batchTimestampMs":1}\n'
            f'{{"sourceVersion":1,"reservoirId":"r","reservoirVersion":{version},'
            '"index":-1,"isStartingVersion":false}')
    assert delta_batch_versions(str(tmp_path), 0) == (0, 3)
    assert delta_batch_versions(str(tmp_path), 1) == (3, 7)

