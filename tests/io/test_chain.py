"""The chain's pure parts: digests, links, and ``walk`` naming the first break, on log
entries made here (the real tables' chains: tests/audit/test_tamper.py)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from lakehouse.audit.integrity import walk
from lakehouse.io.chain import Link, digest_of, is_projects, link, scheme_of
from lakehouse.io.digest import ZERO, RowsDigest, arrow_digest

DAY_MS = 86_400_000
HORIZON = 7 * DAY_MS


def entry(*acts: dict[str, Any], mark: bool = True, operation: str = "WRITE",
          at: int = 0, **info: Any) -> bytes:
    meta = json.dumps({"lakehouse.app_id": "q"}) if mark else None
    commit = {"operation": operation, "timestamp": at, "engineInfo": "Apache-Spark/4.2.0",
              **({"userMetadata": meta} if meta else {}), **info}
    return "\n".join(json.dumps(a) for a in [{"commitInfo": commit}, *acts]).encode()


def add(path: str) -> dict[str, Any]:
    return {"add": {"path": path, "dataChange": True}}


def remove(path: str, at: int) -> dict[str, Any]:
    return {"remove": {"path": path, "deletionTimestamp": at}}


def d(n: int) -> RowsDigest:
    return RowsDigest(n, (n, 2 * n, 3 * n, 4 * n))


def chained(entries: dict[int, bytes], rows: dict[str, RowsDigest]) -> dict[int, Link]:
    """The links a writer makes for ``entries`` (``rows``: each file's digest)."""
    out, prev, content = {}, "", ZERO
    for v in sorted(entries):
        acts = [json.loads(x) for x in entries[v].decode().splitlines()]
        added = sum((rows[a["add"]["path"]] for a in acts if "add" in a), ZERO)
        gone = sum((rows[a["remove"]["path"]] for a in acts if "remove" in a), ZERO)
        content = content + added - gone
        out[v] = link(v, prev, entries[v], added, content, "spark")
        prev = out[v].digest
    return out


FILES = {"a.parquet": d(3), "b.parquet": d(5), "c.parquet": d(8)}


def log() -> dict[int, bytes]:
    return {0: entry(operation="CREATE TABLE"), 1: entry(add("a.parquet")),
            2: entry(add("b.parquet")), 3: entry(remove("a.parquet", 10), add("c.parquet"),
                                                 operation="MERGE")}


def test_a_digest_merges_and_removes_and_reads_back() -> None:
    both = d(3) + d(5)
    assert both == d(8) and both - d(5) == d(3) and d(3) + ZERO == d(3)
    assert RowsDigest.parse(both.text()) == both and ZERO.text() == "0:0:0:0:0"


def test_the_arrow_digest_ignores_order_and_sees_any_change() -> None:
    rows = pa.table({"k": [1, 2, 3], "v": ["x", "y", None], "part": ["p", "p", "q"]})
    same = pa.table({"k": [3, 1, 2], "v": [None, "x", "y"], "part": ["q", "p", "p"]})
    changed = pa.table({"k": [1, 2, 3], "v": ["x", "z", None], "part": ["p", "p", "q"]})
    assert arrow_digest(rows) == arrow_digest(same) and arrow_digest(rows).rows == 3
    assert arrow_digest(rows) != arrow_digest(changed)
    assert arrow_digest(rows, ["part"]) != arrow_digest(rows)
    assert arrow_digest(rows.slice(0, 2)) + arrow_digest(rows.slice(2)) == arrow_digest(rows)


def test_a_link_hashes_its_predecessor_its_entry_and_its_rows() -> None:
    one = link(1, "", b"entry", d(3), d(3), "spark")
    assert one.digest == digest_of("", one.entry, d(3).text(), d(3).text())
    assert link(1, "x", b"entry", d(3), d(3), "spark").digest != one.digest
    assert link(1, "", b"entry!", d(3), d(3), "spark").digest != one.digest
    assert link(1, "", b"entry", d(4), d(3), "spark").digest != one.digest
    assert Link.loads(one.dumps()) == one and Link.loads(b'{"version": 1') is None


def test_the_project_mark_and_the_writer_engine() -> None:
    assert is_projects({"userMetadata": json.dumps({"lakehouse.operation": "create"})})
    assert not is_projects({}) and not is_projects({"userMetadata": "free text"})
    assert scheme_of({"clientVersion": "delta-rs.1.6.6"}) == "arrow"
    assert scheme_of({"engineInfo": "Apache-Spark/4.2.0 Delta-Lake/4.4.0"}) == "spark"


def test_an_untouched_chain_verifies_to_its_head() -> None:
    entries = log()
    links = chained(entries, FILES)
    found = walk("t", entries, links, FILES, HORIZON)
    assert found.ok and found.head == links[3].digest and (found.first, found.latest) == (0, 3)


def test_each_kind_of_tampering_breaks_at_its_version() -> None:
    entries = log()
    links = chained(entries, FILES)

    def broken(entries: dict[int, bytes] = entries, links: dict[int, Link] = links,
               files: dict[str, RowsDigest | None] | None = None) -> tuple[int, str] | None:
        found = walk("t", entries, links, FILES if files is None else files, HORIZON).broken
        return None if found is None else (found.version, found.kind)

    assert broken(files={**FILES, "b.parquet": d(6)}) == (2, "rows")
    assert broken(files={**FILES, "b.parquet": None}) == (2, "deleted")
    assert broken(entries={**entries, 2: entries[2].replace(b"WRITE", b"WRITX")}) == (2, "edited")
    assert broken(entries={**entries, 4: entry(add("b.parquet"), mark=False)}) == (4, "foreign")
    assert broken(entries={**entries, 4: entry(add("b.parquet"))}) == (4, "unlinked")
    forged = link(2, "0" * 64, entries[2], FILES["b.parquet"], d(8), "spark")
    assert broken(links={**links, 2: forged}) == (2, "link")
    # a link rewritten with the tampered file's digest does not make the chain whole
    rewritten = {**links, 2: link(2, links[1].digest, entries[2], d(6), d(9), "spark")}
    assert broken(links=rewritten, files={**FILES, "b.parquet": d(6)}) == (3, "link")


def test_files_a_vacuum_deleted_are_accounted_for_and_an_erasure_is_named() -> None:
    entries = log()
    vacuum = {"operationParameters": {"specifiedRetentionMillis": 0}}
    erased = {**entries, 4: entry(operation="VACUUM START", at=20, **vacuum),
              5: entry(operation="VACUUM END", at=21)}
    links = chained(erased, FILES)
    found = walk("t", erased, links, {**FILES, "a.parquet": None}, HORIZON)
    assert found.ok and [(f.version, f.kind) for f in found.accounted] == [(1, "erased")]
    kept = {**entries, 4: entry(operation="VACUUM START", at=HORIZON + 20, operationParameters={
        "specifiedRetentionMillis": HORIZON})}
    found = walk("t", kept, chained(kept, FILES), {**FILES, "a.parquet": None}, HORIZON)
    assert found.ok and [(f.version, f.kind) for f in found.accounted] == [(1, "vacuumed")]
    early = {**entries, 4: entry(operation="VACUUM START", at=30, operationParameters={
        "specifiedRetentionMillis": HORIZON})}  # a vacuum that kept the file: not it
    found = walk("t", early, chained(early, FILES), {**FILES, "a.parquet": None}, HORIZON)
    assert found.broken is not None and (found.broken.version, found.broken.kind) == \
        (1, "deleted")


def test_a_log_whose_first_entries_expired_is_checked_from_its_oldest() -> None:
    entries = log()
    links = chained(entries, FILES)
    later = {v: e for v, e in entries.items() if v >= 2}
    found = walk("t", later, links, FILES, HORIZON)
    assert found.ok and found.first == 2
