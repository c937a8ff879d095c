"""What an auditor takes away: ``audit rules``, ``audit horizon``, ``audit export``,
``audit check`` and ``audit verify``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lakehouse import graph
from lakehouse.cli.common import say
from lakehouse.config import Config


def cmd_audit_rules(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.audit.rules import in_force
    from lakehouse.audit.timetravel import parse_as_of
    found = in_force(graph.build(config), args.table,
                     parse_as_of(args.as_of) if args.as_of else None)
    say(json.dumps(found.to_json(), indent=1) if args.format == "json" else found.describe())
    return 0


def cmd_audit_export(config: Config, args: argparse.Namespace) -> int:
    from pathlib import Path

    from lakehouse.audit.evidence import export
    from lakehouse.audit.timetravel import parse_as_of
    done = export(graph.build(config), args.table,
                  parse_as_of(args.as_of) if args.as_of else None, Path(args.output))
    say(done.describe())
    return 0


def cmd_audit_check(config: Config, args: argparse.Namespace) -> int:
    from pathlib import Path

    from lakehouse.audit.evidence import check
    say(check(Path(args.bundle)).describe())
    return 0


def cmd_audit_horizon(config: Config, args: argparse.Namespace) -> int:
    import pyarrow as pa

    from lakehouse.audit.retention import horizon
    from lakehouse.catalog import require_tables, table_names
    from lakehouse.query import write_result
    tables = args.table or table_names(config)
    require_tables(config, tables)
    if args.format == "table":
        say(f"audit horizon: {config.retention.audit_horizon_days:g} days "
            f"(retention.audit_horizon_days); every table below is readable back to its "
            "oldest readable version")
    write_result(pa.Table.from_pylist([horizon(config, t).row() for t in tables]), args.format,
                 None)
    return 0


def cmd_audit_verify(config: Config, args: argparse.Namespace) -> int:
    import pyarrow as pa

    from lakehouse.audit.integrity import broken, verify
    from lakehouse.query import write_result
    progress = say if args.format == "table" else None
    if progress:
        say("recomputing each table's chain from its Delta log and data files")
    checked = verify(config, args.table, progress=progress)
    write_result(pa.Table.from_pylist([c.row() for c in checked]), args.format, None)
    if args.format == "table":
        for c in checked:
            for found in c.accounted:
                say(f"  {c.table} {found.describe()}")
    error = broken(checked)
    if error is not None:
        raise error
    return 0


def register_audit(sub: Any) -> None:
    """``lakehouse audit``."""
    p = sub.add_parser("audit", help="evidence for auditors: rules, horizon, bundles",
                       description="What an auditor takes away: the contract and suite a "
                                   "table was routed with at a version or an instant, kept in "
                                   "the warehouse by content hash; how far back each table "
                                   "can be read.")
    actions = p.add_subparsers(dest="action", required=True)
    rules = actions.add_parser(
        "rules", help="the contract and suite in force for a table version",
        description="Print the contract and suite files a silver-side table's commit "
                    "recorded (by SHA-256) at the version current then, from the warehouse's "
                    "_system.rules archive; for a gold table, those of the silver version it "
                    "was built from.",
        epilog="e.g. lakehouse audit rules gold.revenue_by_category_5m --as-of "
               "2026-11-24T18:00:00Z")
    rules.add_argument("table", help="layer.table, e.g. silver.orders")
    rules.add_argument("--as-of", metavar="VERSION|TIME",
                       help="a version of the table, or an ISO-8601 instant (naive means UTC); "
                            "default: the latest")
    rules.add_argument("--format", choices=["text", "json"], default="text")
    rules.set_defaults(func=cmd_audit_rules, reads_warehouse=True)
    reach = actions.add_parser(
        "horizon", help="per table, the oldest version still readable",
        description="Per table: the oldest version in its log, the oldest version the last "
                    "vacuum kept whole (readable: every version since), when it was vacuumed, "
                    "and whether its Delta retention is the audit horizon "
                    "(retention.audit_horizon_days).")
    reach.add_argument("table", nargs="*", help="layer.table (default: every table)")
    reach.add_argument("--format", choices=["table", "csv", "json"], default="table")
    reach.set_defaults(func=cmd_audit_horizon, reads_warehouse=True)
    bundle = actions.add_parser(
        "export", help="a table version as a verifiable evidence bundle (zip)",
        description="Write one zip: the rows as they were (Parquet and CSV), the provenance "
                    "to Kafka offsets, the ledger lines and expectation results of every "
                    "silver batch the version was built from, the contracts and suites in "
                    "force, the OpenLineage events of those runs, and a manifest with the "
                    "SHA-256 of every file. Note the manifest's SHA-256 it prints.",
        epilog="e.g. lakehouse audit export gold.revenue_by_category_5m --as-of "
               "2026-11-24T18:00:00Z --output evidence.zip")
    bundle.add_argument("table", help="layer.table")
    bundle.add_argument("--as-of", metavar="VERSION|TIME",
                        help="a version, or an ISO-8601 instant (naive means UTC); default: "
                             "the latest")
    bundle.add_argument("--output", required=True, help="the zip to write")
    bundle.set_defaults(func=cmd_audit_export, reads_warehouse=True)
    checking = actions.add_parser(
        "check", help="verify an evidence bundle, offline",
        description="Check a bundle from the zip alone (no Spark, no warehouse): every file "
                    "is in the manifest with its SHA-256, unchanged; LH-AUDIT-003 names the "
                    "first file that is not. Prints the manifest's SHA-256 to compare with "
                    "the one noted at export.")
    checking.add_argument("bundle", help="the zip")
    checking.set_defaults(func=cmd_audit_check)
    chained = actions.add_parser(
        "verify", help="recompute each table's chain of digests; name the first break",
        description="Every version the project commits is linked in its table's chain "
                    "(<table>/_chain): a SHA-256 over the previous link, the version's log "
                    "entry, the digest of the rows it added (computed as they were written) "
                    "and of the whole table. Recompute every link from the Delta log and the "
                    "data files: LH-AUDIT-004 names, per table, the first version where a "
                    "log entry was edited, a data file changed or deleted, or another writer "
                    "committed. Files a vacuum or forget's erasure deleted are listed, not "
                    "breaks. Note each table's head: a later verify must reach it.",
        epilog="e.g. lakehouse audit verify gold.revenue_by_category_5m")
    chained.add_argument("table", nargs="*",
                         help="layer.table (default: every table but the event log)")
    chained.add_argument("--format", choices=["table", "csv", "json"], default="table")
    chained.set_defaults(func=cmd_audit_verify, reads_warehouse=True)
