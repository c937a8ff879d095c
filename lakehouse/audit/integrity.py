"""``lakehouse audit verify``: recompute a table's chain (``lakehouse.io.chain``) from its
Delta log and its data files, and name the first version where it breaks.

What breaks it, each found at the version it touched:

- ``edited``: a log entry differs from the one linked (SHA-256);
- ``foreign``: a version no project writer committed (no link, no project mark);
- ``unlinked``: a project commit that was never linked (its job died, nothing wrote after);
- ``rows``: the files a version added no longer hold the rows it wrote;
- ``deleted``: a file a version added is gone, and no vacuum accounts for it;
- ``content``: the whole table's digest at a version differs from the one linked;
- ``link``: a link that does not follow the one before, or whose digest is not its own.

Files deleted by a vacuum are not breaks: one that kept the audit horizon removed only
what the horizon let go (``vacuumed``), one inside it is ``forget``'s erasure
(``erased``); both are listed. Versions whose log entries expired with the horizon are
before the chain's first checked link, which anchors the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from pyspark.sql import SparkSession

from lakehouse.audit.retention import retained_ms, spark_session
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.chain import Link, digest_of, entry_info, is_projects, links, scheme_of
from lakehouse.io.delta_log import entry_actions, latest_version, log_bytes
from lakehouse.io.digest import ZERO, RowsDigest
from lakehouse.printing import Printer

BREAKS = ("edited", "foreign", "unlinked", "rows", "deleted", "content", "link")


@dataclass(frozen=True)
class Finding:
    """Something ``verify`` found at one version."""

    version: int
    kind: str
    """One of ``BREAKS``, or ``erased`` / ``vacuumed`` (accounted for, not a break)."""
    detail: str

    def describe(self) -> str:
        return f"version {self.version}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class Integrity:
    """One table's chain, checked."""

    table: str
    first: int | None
    """The oldest version checked (the log's oldest entry)."""
    latest: int | None
    head: str | None
    """The digest of the last link checked: note it, a later verify must reach it."""
    broken: Finding | None = None
    accounted: list[Finding] = field(default_factory=list)
    """Files gone by a vacuum or an erasure: listed, not breaks."""

    @property
    def ok(self) -> bool:
        return self.broken is None

    def row(self) -> dict[str, Any]:
        """One line of ``audit verify``'s table."""
        erased = sorted({f.version for f in self.accounted if f.kind == "erased"})
        return {"table": self.table, "verified": "yes" if self.ok else "NO",
                "versions": "" if self.first is None else f"{self.first}-{self.latest}",
                "first_break": "" if self.broken is None else self.broken.describe(),
                "erased_versions": ", ".join(map(str, erased)),
                "head": (self.head or "")[:16]}


@dataclass(frozen=True)
class Vacuum:
    """A VACUUM START in the log: when, and the retention it kept (milliseconds)."""

    version: int
    at_ms: int
    retention_ms: int


# -- pure: the walk --------------------------------------------------------------------------

def walk(table: str, entries: Mapping[int, bytes], chain: Mapping[int, Link],
         files: Mapping[str, RowsDigest | None], horizon_ms: int) -> Integrity:
    """Check ``chain`` against ``entries`` (every log entry still stored, by version) and
    ``files`` (each data file the entries add or remove, with its digest; None if it is
    gone). Pure."""
    if not entries:
        return Integrity(table, None, None, None)
    order = sorted(entries)
    parsed = {v: entry_actions(entries[v]) for v in order}
    removed = {a["remove"]["path"]: (v, int(a["remove"].get("deletionTimestamp") or 0))
               for v in order for a in parsed[v] if "remove" in a}
    vacuums = [_vacuum(v, entry_info(entries[v])) for v in order
               if entry_info(entries[v]).get("operation") == "VACUUM START"]
    first = order[0]
    anchor = chain.get(first)
    prev = anchor.prev if anchor else ""
    before = chain.get(first - 1)
    content: RowsDigest | None = ZERO if first == 0 else \
        (RowsDigest.parse(before.content) if before else None)
    accounted: list[Finding] = []

    def result(broken: Finding | None, head: str) -> Integrity:
        return Integrity(table, first, order[-1], head or None, broken, accounted)

    for v in order:
        info = entry_info(entries[v])
        here = chain.get(v)
        if here is None:
            kind, who = ("unlinked", "committed by the project but never linked") \
                if is_projects(info) else \
                ("foreign", f"committed by another writer ({_writer(info)}), not the project")
            return result(Finding(v, kind, who), prev)
        if hashlib.sha256(entries[v]).hexdigest() != here.entry:
            return result(Finding(v, "edited", "its log entry is not the one linked"), prev)
        if here.prev != prev or digest_of(here.prev, here.entry, here.rows,
                                          here.content) != here.digest:
            return result(Finding(v, "link", "its link does not follow the chain"), prev)
        adds = [a["add"]["path"] for a in parsed[v] if "add" in a]
        gone_adds = [p for p in adds if files.get(p) is None]
        for p in gone_adds:
            why = _vacuumed(p, removed, vacuums, horizon_ms)
            if why is None:
                return result(Finding(v, "deleted", f"its data file {unquote(p)} is gone, "
                                      "and no vacuum removed it"), prev)
            accounted.append(Finding(v, why[0], why[1]))
        if not gone_adds:
            rows = sum((files[p] or ZERO for p in adds), ZERO)
            if rows.text() != here.rows:
                return result(Finding(v, "rows", "its data files do not hold the rows it "
                                      f"wrote ({', '.join(map(unquote, adds))})"), prev)
        drops = [a["remove"]["path"] for a in parsed[v] if "remove" in a]
        if content is not None and not gone_adds and all(files.get(p) is not None
                                                           for p in drops):
            expect = content + RowsDigest.parse(here.rows) - \
                sum((files[p] or ZERO for p in drops), ZERO)
            if expect.text() != here.content:
                return result(Finding(v, "content", "the table's content at this version is "
                                      "not the one linked"), prev)
        prev, content = here.digest, RowsDigest.parse(here.content)
    return result(None, prev)


def _vacuum(version: int, info: Mapping[str, Any]) -> Vacuum:
    return Vacuum(version, int(info.get("timestamp") or 0), retained_ms(info))


def _vacuumed(path: str, removed: Mapping[str, tuple[int, int]], vacuums: Sequence[Vacuum],
              horizon_ms: int) -> tuple[str, str] | None:
    """Why the file at ``path`` is gone, if a vacuum deleted it: (kind, detail)."""
    if path not in removed:
        return None
    by, at_ms = removed[path]
    for vac in vacuums:
        if vac.version > by and at_ms < vac.at_ms - vac.retention_ms:
            if vac.retention_ms < horizon_ms:
                return "erased", (f"rows erased by forget: removed at version {by}, deleted "
                                  f"by the vacuum at version {vac.version} "
                                  f"(retention {vac.retention_ms // 3_600_000} h)")
            return "vacuumed", (f"removed at version {by}, deleted by the vacuum at version "
                                f"{vac.version}, beyond the audit horizon")
    return None


def _writer(info: Mapping[str, Any]) -> str:
    engine = info.get("engineInfo") or info.get("clientVersion") or "unknown engine"
    when = datetime.fromtimestamp(int(info.get("timestamp") or 0) / 1000, UTC)
    return f"{info.get('operation', 'an operation')} by {engine} at {when:%Y-%m-%d %H:%M:%S}Z"


# -- the I/O: the log, the links, the files --------------------------------------------------

UNCHAINED = ("_system.events",)
"""Tables whose commits are not linked: the event log (appended by every batch; it
records what happened, it is not what was reported)."""


def verify(config: Config, tables: Sequence[str] = (), spark: SparkSession | None = None,
           progress: Printer | None = None) -> list[Integrity]:
    """Verify ``tables`` (default: every table in the warehouse but ``UNCHAINED``)."""
    from lakehouse.catalog import require_tables, table_names, table_uri
    names = list(tables) or [t for t in table_names(config) if t not in UNCHAINED]
    require_tables(config, names)
    spark_session(config, spark or SparkSession.getActiveSession())  # file digests run on it
    checked = []
    for name in names:
        found = verify_uri(name, table_uri(config, name), config.retention.horizon_hours)
        if progress is not None:
            progress(f"  {name}: " + ("verified" if found.ok else "BROKEN") +
                     ("" if found.first is None else f", versions {found.first}-{found.latest}"))
        checked.append(found)
    return checked


def broken(checked: Sequence[Integrity]) -> LakehouseError | None:
    """LH-AUDIT-004 naming each table's first break, if any table's chain breaks."""
    bad = [c for c in checked if not c.ok]
    if not bad:
        return None
    return LakehouseError(
        ErrorCode.AUDIT_CHAIN_BROKEN,
        "; ".join(f"{c.table} breaks at {c.broken.describe()}" for c in bad if c.broken),
        hint="the table was changed outside the project after it was written: compare with a "
             "backup or an evidence bundle from before that version, and find who has write "
             "access to its storage",
        tables=[c.table for c in bad])

def verify_uri(table: str, uri: str, horizon_hours: int) -> Integrity:
    """Verify the table at ``uri`` (``table`` its name): every stored log entry, its link,
    and the data files it added (one Spark job for Spark-written files)."""
    from lakehouse.io.delta import file_digests
    latest = latest_version(uri)
    if latest is None:
        return Integrity(table, None, None, None)
    entries = {v: e for v in range(latest + 1) if (e := log_bytes(uri, v)) is not None}
    chain = links(uri)
    scheme_of_file: dict[str, str] = {}  # each file hashed as the version that added it
    for kind in ("add", "remove"):
        for v, entry in entries.items():
            scheme = chain[v].scheme if v in chain else scheme_of(entry_info(entry))
            for a in entry_actions(entry):
                if kind in a:
                    scheme_of_file.setdefault(a[kind]["path"], scheme)
    digests: dict[str, RowsDigest | None] = {}
    for scheme in set(scheme_of_file.values()):
        digests.update(file_digests(uri, sorted(p for p, s in scheme_of_file.items()
                                                if s == scheme), scheme, checking=True))
    return walk(table, entries, chain, digests, horizon_hours * 3_600_000)
