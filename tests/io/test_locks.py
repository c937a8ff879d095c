"""Table locks: one writer per table across processes, released however the holder ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.locks import holder, lock_dir, table_locks, writing
from tests.conftest import ROOT

HOLD = textwrap.dedent("""
    import sys, time
    from lakehouse.io.locks import table_locks
    with table_locks(sys.argv[1], ["silver.orders"], "a test job"):
        print("held", flush=True)
        time.sleep(600)
""")


def _holder(warehouse: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(warehouse)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_table_held_by_another_process_fails_naming_it(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    try:
        with pytest.raises(LakehouseError) as caught, \
                table_locks(str(tmp_path), ["bronze.orders", "silver.orders"], "run"):
            pass
        assert caught.value.code is ErrorCode.TABLE_LOCKED
        assert f"process {holder.pid}" in str(caught.value) and "a test job" in str(caught.value)
        # The lock it took before the conflict is released: another table is free.
        with table_locks(str(tmp_path), ["bronze.orders"], "run"):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    job = _holder(tmp_path)
    found = holder(str(tmp_path), "silver.orders")
    assert found is not None and found["pid"] == job.pid and found["doing"] == "a test job"
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    assert holder(str(tmp_path), "silver.orders") is None  # who runs it: nobody
    assert holder(str(tmp_path), "gold.never_run") is None
    with table_locks(str(tmp_path), ["silver.orders"], "run"):
        pass


def test_the_same_process_may_take_a_lock_it_holds(tmp_path: Path) -> None:
    with table_locks(str(tmp_path), ["gold.a"], "replay"), \
            table_locks(str(tmp_path), ["gold.a", "gold.b"], "run"):
        assert sorted(p.name for p in (tmp_path / "_locks").iterdir()) == \
            ["gold.a.lock", "gold.b.lock"]


@pytest.mark.parametrize(("root", "expected"), [
    ("s3a://bucket/shop", None),
    ("/data/wh", Path("/data/wh/_locks")),
    ("file:///data/wh", Path("/data/wh/_locks")),
])
def test_locks_live_beside_a_local_warehouse_only(root: str, expected: Path | None) -> None:
    assert lock_dir(root) == expected


def test_a_warehouse_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(LakehouseError) as caught, \
            table_locks(str(tmp_path / "a-file" / "warehouse"), ["bronze.orders"], "run"):
        pass
    assert caught.value.code is ErrorCode.WAREHOUSE_NOT_WRITABLE
    assert "Not a directory" in str(caught.value) and "warehouse.root" in str(caught.value)


WRITE = textwrap.dedent("""
    import sys, time
    from lakehouse.io.locks import writing
    with writing(sys.argv[1], "silver.orders"):
        print("writing", flush=True)
        sys.stdin.readline()
    print("done", flush=True)
""")


def test_a_write_lock_waits_for_the_other_writer(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", WRITE, str(tmp_path)], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert other.stdin is not None and other.stdout is not None
    try:
        assert other.stdout.readline().strip() == "writing"
        entered = threading.Event()

        def write() -> None:
            with writing(str(tmp_path), "silver.orders"):
                entered.set()

        waiter = threading.Thread(target=write)
        waiter.start()
        # Another table's write lock is free meanwhile; this one is not.
        with writing(str(tmp_path), "silver.clickstream"):
            pass
        time.sleep(0.5)
        assert not entered.is_set()
        other.stdin.write("\n")
        other.stdin.flush()
        assert other.stdout.readline().strip() == "done"
        waiter.join(timeout=30)
        assert entered.is_set()
    finally:
        other.kill()
        other.wait()
