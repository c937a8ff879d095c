"""``lakehouse audit rules``: the contract and suite in force for a table at a version or
an instant, read back from the warehouse (the commit's hashes, the archive's files).

A silver-side commit records the hashes of the files it routed with
(``lakehouse.quality.in_force``). A gold table applies no contract of its own: it is
answered by its silver table at the newest silver version the gold version was built
from (its commits record the silver versions they read).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lakehouse import graph
from lakehouse.audit.timetravel import AsOf, Version, open_latest, recorded, resolve, versions
from lakehouse.batch import SILVER_VERSIONS
from lakehouse.catalog import split_name
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.quality.in_force import (
    CONTRACT_SHA256,
    PROJECT_VERSION,
    SUITE_SHA256,
    RuleFile,
    archived,
)


@dataclass(frozen=True)
class InForce:
    """The rules a table version was routed with, and the commit that says so."""

    table: str
    version: int
    routed_by: str
    """The silver-side table whose commit recorded them (the table itself, or the silver
    table a gold version was built from)."""
    commit_version: int
    committed_at: datetime
    project_version: str | None
    contract: RuleFile
    suite: RuleFile

    def describe(self) -> str:
        """The files, with where they were read from, for a terminal."""
        header = (f"{self.table} version {self.version}: routed by {self.routed_by} version "
                  f"{self.commit_version} ({self.committed_at.isoformat()}, lakehouse "
                  f"{self.project_version or '?'})")
        return "\n".join([header, *(f"\n--- {f.kind} {f.name} (sha256 {f.sha256})\n{f.text.rstrip()}"
                                    for f in (self.contract, self.suite))])

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the files' texts included)."""
        return {"table": self.table, "version": self.version, "routed_by": self.routed_by,
                "commit_version": self.commit_version,
                "committed_at": self.committed_at.isoformat(),
                "project_version": self.project_version,
                **{f.kind: {"name": f.name, "sha256": f.sha256, "text": f.text}
                   for f in (self.contract, self.suite)}}


def latest_rules(log: list[Version], version: int) -> Version | None:
    """The newest commit at or before ``version`` that recorded its rules (pure)."""
    return next((v for v in reversed(log) if v.version <= version
                 and CONTRACT_SHA256 in v.metadata), None)


def in_force(pipeline: graph.Graph, table: str, as_of: AsOf | None = None) -> InForce:
    """The contract and suite ``table`` was routed with at ``as_of`` (default: now)."""
    config = pipeline.config
    log = versions(open_latest(config, table))
    version = log[-1].version if as_of is None else resolve(log, as_of, table)
    routed_by, routed_log, upto = table, log, version
    if split_name(table)[0] == "gold":  # the silver versions its commits were built from
        routed_by = pipeline.query(table).input
        built = next((v for v in reversed(log) if v.version <= version
                      and SILVER_VERSIONS in v.metadata), None)
        upto = -1 if built is None else int(recorded(built.metadata, SILVER_VERSIONS)["to"])
        routed_log = versions(open_latest(config, routed_by))
    commit = latest_rules(routed_log, upto)
    if commit is None:
        raise LakehouseError(
            ErrorCode.AUDIT_NO_RULES,
            f"{routed_by} recorded no rules in force up to version {upto}",
            hint="commits written before lakehouse recorded its rules carry none; only "
                 "silver-side tables (and gold through them) have rules", table=table)
    hashes = [commit.metadata[CONTRACT_SHA256], commit.metadata[SUITE_SHA256]]
    files = archived(config.warehouse.table_uri("_system", "rules"),
                     config.warehouse.storage_options, hashes)
    missing = [h for h in hashes if h not in files]
    if missing:
        raise LakehouseError(
            ErrorCode.AUDIT_RULES_NOT_KEPT,
            f"the warehouse's archive (_system.rules) lacks the file with sha256 {missing[0]} "
            f"that {routed_by} version {commit.version} applied",
            hint="the archive was removed or rewritten outside the project; the file may "
                 "still be in the project's git history", table=table)
    return InForce(table, version, routed_by, commit.version, commit.at,
                   commit.metadata.get(PROJECT_VERSION), files[hashes[0]], files[hashes[1]])
