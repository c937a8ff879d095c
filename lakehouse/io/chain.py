"""The chain of a table's versions: tamper evidence for every commit the project writes.

Each version ``v`` the project commits gets a link, written right after the commit to
``<table>/_chain/<v>.json`` (beside ``_delta_log``; ``VACUUM`` keeps ``_``-named folders):

    digest(v) = SHA-256(digest(previous link) | SHA-256(log entry v) | rows(v) | content(v))

``rows(v)`` is the digest of the rows the commit added (``lakehouse.io.digest``), computed
on the executors in the pass that wrote them where the write is an append, else from the
files the commit added (a MERGE's rewritten files: gold's, small); ``content(v)`` is the
digest of the whole table at ``v``: the previous content plus the rows added, minus the
rows of the files removed. A commit cannot hold a hash of its own log entry, so the link
lives beside it; ``lakehouse audit verify`` recomputes every link from the log and the
data files and names the first version where they disagree.

A version is linked by the writer that committed it. One the project committed but did
not link (a job killed in between) is linked by the next project write to the table,
from its files; a version without the project's mark in its commit (another writer's) is
never linked, so the chain shows it. ``enable(False)`` (``retention.tamper_evidence``)
stops linking in this process; the next linking write catches up from the files.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from lakehouse.io.delta_log import (
    commit_info,
    commit_metadata,
    entry_actions,
    latest_version,
    log_bytes,
)
from lakehouse.io.digest import ARROW, SPARK, ZERO, RowsDigest
from lakehouse.io.storage import exists, file_names, filesystem, join, write_bytes

CHAIN = "_chain"
"""The folder of a table's links, beside its ``_delta_log``."""
MARK = "lakehouse."
"""Every project commit's ``userMetadata`` is JSON with keys under this prefix."""


@dataclass(frozen=True)
class Link:
    """One version's link in its table's chain."""

    version: int
    prev: str
    """The previous link's digest ("" for the first)."""
    entry: str
    """SHA-256 of the version's log entry, as stored."""
    rows: str
    """The digest of the rows it added (``RowsDigest.text``)."""
    content: str
    """The digest of the whole table at this version."""
    scheme: str
    """How its rows were hashed: ``spark`` or ``arrow`` (``lakehouse.io.digest``)."""
    digest: str

    def dumps(self) -> bytes:
        """The link as its file holds it."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def loads(cls, data: bytes) -> Link | None:
        """The link a file holds; None if it is not one (a write cut short)."""
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError):
            return None


def digest_of(prev: str, entry: str, rows: str, content: str) -> str:
    """A link's digest (pure)."""
    return hashlib.sha256("|".join((prev, entry, rows, content)).encode()).hexdigest()


def link(version: int, prev: str, entry: bytes, rows: RowsDigest, content: RowsDigest,
         scheme: str) -> Link:
    """Version ``version``'s link after the link whose digest is ``prev`` (pure)."""
    entry_sha = hashlib.sha256(entry).hexdigest()
    return Link(version, prev, entry_sha, rows.text(), content.text(), scheme,
                digest_of(prev, entry_sha, rows.text(), content.text()))


def entry_info(entry: bytes) -> dict[str, Any]:
    """A log entry's ``commitInfo`` (pure; empty if it has none)."""
    return commit_info(entry_actions(entry)) or {}


def is_projects(info: dict[str, Any]) -> bool:
    """Whether a commit carries the project's mark in its ``userMetadata`` (pure)."""
    return any(str(k).startswith(MARK) for k in commit_metadata(info))


def scheme_of(info: dict[str, Any]) -> str:
    """The digest scheme of a commit's rows: delta-rs writes the driver's rows (pure)."""
    engine = f"{info.get('engineInfo', '')} {info.get('clientVersion', '')}"
    return ARROW if "delta-rs" in engine else SPARK


# -- the links on storage ------------------------------------------------------------------

def link_uri(uri: str, version: int) -> str:
    """Where version ``version``'s link of the table at ``uri`` is."""
    return join(uri, CHAIN, f"{version:020d}.json")


def read_link(uri: str, version: int) -> Link | None:
    """Version ``version``'s link, if it has one."""
    fs, path = filesystem(link_uri(uri, version))
    try:
        with fs.open_input_stream(path) as stream:
            return Link.loads(stream.read())
    except OSError:
        return None


def _linked_versions(uri: str) -> list[int]:
    """The versions with a link file, oldest first (one listing)."""
    return sorted(int(name[:20]) for name in file_names(join(uri, CHAIN))
                  if name.endswith(".json") and name[:20].isdigit())


def links(uri: str) -> dict[int, Link]:
    """Every link of the table at ``uri``, by version."""
    found = (read_link(uri, v) for v in _linked_versions(uri))
    return {one.version: one for one in found if one is not None}


def _latest_link(uri: str) -> Link | None:
    """The newest readable link (a link file cut short is passed over)."""
    found = (read_link(uri, v) for v in reversed(_linked_versions(uri)))
    return next((one for one in found if one is not None), None)


# -- linking ---------------------------------------------------------------------------------

FileDigests = Callable[[str, list[str], str], dict[str, RowsDigest | None]]
"""The digest of each of a table's data files (table uri, relative paths, scheme; None
for a file that is gone)."""


@dataclass(frozen=True)
class _Head:
    through: int
    """Every version up to this one is linked or left out (another writer's)."""
    digest: str
    content: RowsDigest
    linked: int = -1
    """The version of the last link (-1: none)."""


_ENABLED = [True]
_HEADS: dict[str, _Head] = {}
_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


def _lock(uri: str) -> threading.Lock:
    """The lock of one table's chain in this process (its queries link in parallel)."""
    with _GUARD:
        return _LOCKS.setdefault(uri, threading.Lock())


def enable(on: bool) -> None:
    """Link this process's commits (the default) or not (``retention.tamper_evidence``)."""
    _ENABLED[0] = on


def enabled() -> bool:
    """Whether this process links its commits."""
    return _ENABLED[0]


def seal(uri: str, version: int, files: FileDigests, observed: RowsDigest | None = None,
         scheme: str = SPARK) -> Link | None:
    """Link version ``version`` of the table at ``uri``, which this process committed, and
    any before it that are not linked yet. ``observed``: the digest of the rows the commit
    added, taken in the pass that wrote them (an append); without it, or where the commit
    also removed files, the digests come from the files (``files``)."""
    if not enabled():
        return None
    with _lock(uri):
        head = _catch_up(uri, version - 1, files)
        if head.through >= version:  # another write's catch-up linked it from its files
            return read_link(uri, version)
        entry = log_bytes(uri, version)
        if entry is None:
            return None
        made = _link(uri, version, entry, head, files, observed, scheme)
        write_bytes(link_uri(uri, version), made.dumps())
        _HEADS[uri] = _Head(version, made.digest, RowsDigest.parse(made.content), version)
        return made


def catch_up(uri: str, files: FileDigests, latest: int | None = None) -> None:
    """Link every version of the table the project committed and nobody linked (after an
    operation with no rows of its own to observe: a create, a vacuum, a restore), up to
    ``latest`` (default: the log's newest, one listing)."""
    if not enabled():
        return
    latest = latest_version(uri) if latest is None else latest
    if latest is None:
        return
    with _lock(uri):
        _catch_up(uri, latest, files)


def _catch_up(uri: str, upto: int, files: FileDigests) -> _Head:
    head = _HEADS.get(uri)
    if head is None or (head.linked >= 0 and not exists(link_uri(uri, head.linked))):
        # first use in this process, or the table was made anew
        last = _latest_link(uri)
        head = _Head(-1, "", ZERO) if last is None else \
            _Head(last.version, last.digest, RowsDigest.parse(last.content), last.version)
    for v in range(head.through + 1, upto + 1):
        existing = read_link(uri, v)
        if existing is not None:  # linked by another process
            head = _Head(v, existing.digest, RowsDigest.parse(existing.content), v)
            continue
        entry = log_bytes(uri, v)
        if entry is None or not is_projects(entry_info(entry)):
            head = _Head(v, head.digest, head.content, head.linked)  # left out: it shows
        else:
            made = _link(uri, v, entry, head, files, None, scheme_of(entry_info(entry)))
            write_bytes(link_uri(uri, v), made.dumps())
            head = _Head(v, made.digest, RowsDigest.parse(made.content), v)
    _HEADS[uri] = head
    return head


def _link(uri: str, version: int, entry: bytes, head: _Head, files: FileDigests,
          observed: RowsDigest | None, scheme: str) -> Link:
    done = entry_actions(entry)
    added = [a["add"]["path"] for a in done if "add" in a]
    removed = [a["remove"]["path"] for a in done if "remove" in a]
    if observed is not None and not removed:
        rows, gone = observed, ZERO
    else:
        each = files(uri, added + removed, scheme) if added or removed else {}
        rows = sum((each.get(p) or ZERO for p in added), ZERO)
        gone = sum((each.get(p) or ZERO for p in removed), ZERO)
    return link(version, head.digest, entry, rows, head.content + rows - gone, scheme)
