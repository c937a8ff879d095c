"""One job per table: an exclusive lock for each table a job writes.

Two copies of a pipeline on one checkpoint would both commit micro-batches, interleaved;
Spark only refuses that inside one session. So every command that writes a table first
takes ``<warehouse>/_locks/<layer>.<table>.lock``, a ``flock`` (filelock's
``UnixFileLock``): the kernel releases it when the process ends, however it ends (a
SIGKILL leaves no stale lock), and the file names the holder for the error message. The
locks live beside the checkpoints, not in them, because replays move checkpoints aside.

A table that two jobs may add rows to side by side (a silver table: its stream and a
quarantine replay) also has a write lock, ``<layer>.<table>.write.lock`` (``writing``),
which orders their read-then-commit steps and is held for seconds.

``flock`` needs a local (or NFS-with-locks) warehouse; on an object store there is no
lock and the scheduler must run one copy of each job, as with Spark itself (and no
quarantine replay of a table while its stream runs).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from filelock import Timeout, UnixFileLock

from lakehouse.errors import ErrorCode, LakehouseError


def lock_dir(warehouse_root: str) -> Path | None:
    """Where the locks of a warehouse live; None on an object store (no locks)."""
    if "://" in warehouse_root and not warehouse_root.startswith("file://"):
        return None
    return Path(warehouse_root.removeprefix("file://")).resolve() / "_locks"


@contextlib.contextmanager
def table_locks(warehouse_root: str, tables: Sequence[str], doing: str) -> Iterator[None]:
    """Hold the locks of ``tables`` (qualified names) while the block runs; a table another
    process holds fails at once with ``LH-STREAM-002`` naming that process."""
    folder = lock_dir(warehouse_root)
    if folder is None or not tables:
        yield
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the first write of every job: a warehouse it cannot write
        raise LakehouseError(
            ErrorCode.WAREHOUSE_NOT_WRITABLE,
            f"cannot write the warehouse {warehouse_root}: {exc.strerror or exc}",
            hint="set warehouse.root (or LAKEHOUSE_WAREHOUSE) to a folder this user can "
                 "create and write", root=warehouse_root) from None
    with contextlib.ExitStack() as held:
        for name in sorted(set(tables)):  # one order: two jobs never wait on each other
            held.enter_context(_lock(folder / f"{name}.lock", name, doing))
        yield


_HELD: set[Path] = set()
"""The locks this process holds: taking one again (a replay that runs the pipeline) is a
no-op, not a conflict with itself."""


@contextlib.contextmanager
def _lock(path: Path, table: str, doing: str) -> Iterator[None]:
    """Take the exclusive lock, waiting up to a second (``holder``, for ``lakehouse
    status``, holds a shared one for an instant while it looks), and write who holds it."""
    if path in _HELD:
        yield
        return

    def name_the_holder(fd: int) -> None:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "doing": doing,
                  "since": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)

    lock = UnixFileLock(path, timeout=1.0, mode=0o644, on_acquired=name_the_holder)
    try:
        lock.acquire()
    except Timeout:
        raise _held_elsewhere(table, path) from None
    _HELD.add(path)
    try:
        yield
    finally:
        _HELD.discard(path)
        lock.release()


def _held_elsewhere(table: str, path: Path) -> LakehouseError:
    try:
        holder = json.loads(path.read_text())
        who = (f"process {holder['pid']} on {holder['host']} ({holder['doing']}, since "
               f"{holder['since']})")
    except (OSError, ValueError, KeyError):
        who = "another process"
    return LakehouseError(
        ErrorCode.TABLE_LOCKED, f"{table} is being written by {who}",
        hint="a second job on the same table would interleave its commits: stop the other "
             "one first (Ctrl-C or SIGTERM stops it between micro-batches), or choose other "
             "tables with --table", table=table, lock=str(path))


def holder(warehouse_root: str, table: str) -> dict[str, object] | None:
    """Who holds the lock of ``table`` now (``pid``, ``host``, ``doing``, ``since``), or
    None: no job writes it (or the warehouse is on an object store, without locks). It
    looks with a shared ``flock``, which filelock does not offer: two looks never see each
    other as the holder, and the file need only be readable."""
    folder = lock_dir(warehouse_root)
    path = folder / f"{table}.lock" if folder else None
    if path is None or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            found = {}
        return found if isinstance(found, dict) else {}
    finally:
        os.close(fd)
    return None


@contextlib.contextmanager
def writing(warehouse_root: str, table: str) -> Iterator[None]:
    """Hold ``table``'s write lock while the block runs, waiting for it if another writer
    (a thread or a process) holds it: the jobs that may write one table side by side (a
    silver table's stream and a quarantine replay of it) take it around what they read of
    the table and the commit that depends on it, so each sees the other's rows. The table
    lock (``table_locks``) says who runs a table; this one only orders commits, for
    seconds. On an object store there is no lock (see the module's note)."""
    folder = lock_dir(warehouse_root)
    if folder is None:
        yield
        return
    with UnixFileLock(folder / f"{table}.write.lock", mode=0o644):
        yield
