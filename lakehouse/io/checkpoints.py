"""Spark checkpoints the project reads before Spark does: is one damaged, moving one
aside so the next run starts its query afresh, and which table versions a change-feed
query's micro-batch covers.

Spark writes a checkpoint's files atomically, but a disk that filled up, a copy cut short
or a hand edit leaves an empty or half-written entry, and Spark then fails the query with
a message about log files that names no way out. Every table resumes from its own commits
when its checkpoint is gone (bronze after the Kafka offsets it holds, silver after its
ledger, gold after the silver versions its commits record), so the way out is to move the
damaged checkpoint aside: ``lakehouse checkpoint reset <table>``.
"""

from __future__ import annotations

import json
import time

from lakehouse.io.storage import file_names, is_dir, join, move, read_text, remove_tree


def has_checkpoint(uri: str) -> bool:
    """Whether the checkpoint at ``uri`` holds progress: an entry in its offsets log (a
    query killed before it planned its first batch leaves the folders, and perhaps a
    temporary file, but no entry)."""
    return any(n.isdigit() for n in file_names(join(uri, "offsets")))


def remove_unstarted(uri: str) -> bool:
    """Remove the checkpoint at ``uri`` if it holds no progress; whether there was one.

    Spark starts such a query afresh, but refuses to when the query keeps state and a
    killed write left a temporary file in ``offsets`` (STATE_STORE_CHECKPOINT_LOCATION_NOT_
    EMPTY); and the table must resume from its own commits, as without a checkpoint."""
    if not is_dir(uri) or has_checkpoint(uri):
        return False
    remove_tree(uri)
    return True


def entry_problem(text: str, log: str) -> str | None:
    """What is wrong with one entry of a checkpoint's ``offsets`` or ``commits`` log, or
    None (pure). An entry is a version line (``v1``), then JSON lines; an offsets entry
    has the batch's metadata, then one line per source (``-`` for a source without one)."""
    if not text.strip():
        return "is empty"
    lines = text.splitlines()
    if not lines[0].startswith("v") or not lines[0][1:].isdigit():
        return f"does not start with a log version line (found {lines[0][:40]!r})"
    body = lines[1:]
    if not body:
        return "ends after its version line"
    for number, line in enumerate(body, start=2):
        if log == "offsets" and number > 2 and line == "-":
            continue
        try:
            json.loads(line)
        except ValueError:
            return f"line {number} is not JSON ({line[:40]!r})"
    return None


def damage(uri: str) -> str | None:
    """What is damaged in the checkpoint at ``uri``, or None (also when there is none):
    its ``metadata``, and the newest entries of its offsets and commits logs, which are
    what Spark reads on start."""
    if not is_dir(uri):
        return None
    names = file_names(uri)
    logs = {log: sorted(int(n) for n in file_names(join(uri, log)) if n.isdigit())
            for log in ("offsets", "commits")}
    if not logs["offsets"] and not logs["commits"]:
        return None
    if "metadata" not in names:
        return "its metadata file (the query id) is missing"
    try:
        json.loads(read_text(join(uri, "metadata"), "replace"))["id"]
    except (ValueError, KeyError, TypeError):
        return "its metadata file is not the query id JSON"
    if logs["commits"] and (not logs["offsets"] or logs["commits"][-1] > logs["offsets"][-1]):
        return f"commits/{logs['commits'][-1]} has no offsets entry"
    for log, batches in logs.items():
        if batches:
            problem = entry_problem(read_text(join(uri, log, str(batches[-1])), "replace"), log)
            if problem:
                return f"{log}/{batches[-1]} {problem}"
    return None


def move_aside(uri: str, label: str) -> str | None:
    """Rename the checkpoint at ``uri`` to ``<uri>.<label>-<unix time>`` (kept for a
    person to inspect); where it went, or None if there was none."""
    if not is_dir(uri):
        return None
    aside = f"{uri}.{label}-{int(time.time())}"
    move(uri, aside)
    return aside


def delta_batch_versions(checkpoint: str, batch_id: int) -> tuple[int, int]:
    """The table versions micro-batch ``batch_id`` of the single-source Delta query with
    this checkpoint may hold (from the previous batch's end offset, or version 0, to its
    own), from Spark's offset log, written before the batch runs."""
    def version(n: int) -> int:
        lines = [ln for ln in read_text(join(checkpoint, "offsets", str(n)), "replace").splitlines()
                 if ln.strip()]
        return int(json.loads(lines[-1])["reservoirVersion"])

    return (version(batch_id - 1) if batch_id else 0), version(batch_id)
