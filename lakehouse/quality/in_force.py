"""The rules in force: which contract and suite a silver commit applied, kept for auditors.

Every silver-side commit (silver, its quarantine, ``_quality``, ``_batches``) records the
SHA-256 of the contract file and of the suite file it routed with, and the project's
version. The files themselves are kept in the warehouse's ``_system.rules`` table, one row
per distinct file content, written once when a writer starts with them: what was in
force at any version can be read back from the warehouse alone, not only from git.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from pyspark.sql import types as T

from lakehouse import __version__
from lakehouse.io.delta import append_rows, arrow_schema, ensure_table
from lakehouse.io.delta_log import BatchCommit, open_table

CONTRACT_SHA256 = "lakehouse.contract_sha256"
SUITE_SHA256 = "lakehouse.suite_sha256"
PROJECT_VERSION = "lakehouse.version"

ARCHIVE_SCHEMA = T.StructType([
    T.StructField("sha256", T.StringType(), False),
    T.StructField("kind", T.StringType(), False),
    T.StructField("name", T.StringType(), False),
    T.StructField("text", T.StringType(), False),
    T.StructField("archived_at", T.TimestampType(), False),
])


@dataclass(frozen=True)
class RuleFile:
    """One contract or suite file as it was: its kind, name, content and content hash."""

    kind: str
    """``contract`` or ``suite``."""
    name: str
    sha256: str
    text: str = field(repr=False)

    @classmethod
    def read(cls, kind: str, path: Path) -> RuleFile:
        data = path.read_bytes()
        return cls(kind, path.name, hashlib.sha256(data).hexdigest(), data.decode("utf-8"))


@dataclass(frozen=True)
class RulesInForce:
    """The contract and suite a silver table routes with."""

    contract: RuleFile
    suite: RuleFile

    @classmethod
    def read(cls, contract: Path, suite: Path) -> RulesInForce:
        return cls(RuleFile.read("contract", contract), RuleFile.read("suite", suite))

    def metadata(self) -> dict[str, str]:
        """What every commit routed with these rules records."""
        return {CONTRACT_SHA256: self.contract.sha256, SUITE_SHA256: self.suite.sha256,
                PROJECT_VERSION: __version__}


_ARCHIVED: set[tuple[str, str, str]] = set()
"""(archive, contract hash, suite hash) this process has kept: nothing to do again."""


def archive(rules: RulesInForce, uri: str, storage_options: Mapping[str, str],
            properties: Mapping[str, str] | None = None) -> None:
    """Keep both files in the archive table at ``uri`` (once per pair of contents: the
    commit is idempotent under an app id made of the two hashes; a process asks the table
    once per pair)."""
    done = (uri, rules.contract.sha256, rules.suite.sha256)
    if done in _ARCHIVED:
        return
    ensure_table(uri, ARCHIVE_SCHEMA, (), "every contract and suite a silver commit applied, "
                 "by content hash", storage_options=storage_options, properties=properties)
    now = datetime.now(UTC)
    rows = pa.Table.from_pylist(
        [{"sha256": f.sha256, "kind": f.kind, "name": f.name, "text": f.text, "archived_at": now}
         for f in (rules.contract, rules.suite)], schema=arrow_schema(ARCHIVE_SCHEMA))
    commit = BatchCommit(f"rules:{rules.contract.sha256[:16]}:{rules.suite.sha256[:16]}", 0)
    append_rows(rows, uri, commit, storage_options)
    _ARCHIVED.add(done)


def archived(uri: str, storage_options: Mapping[str, str], hashes: Sequence[str]
             ) -> dict[str, RuleFile]:
    """The archived files with these content hashes (those the archive holds)."""
    table = open_table(uri, storage_options)
    if table is None or not hashes:
        return {}
    import pyarrow.compute as pc
    data = table.to_pyarrow_dataset().to_table(filter=pc.field("sha256").isin(list(hashes)))
    return {r["sha256"]: RuleFile(r["kind"], r["name"], r["sha256"], r["text"])
            for r in data.to_pylist()}
