"""Looking back and repairing: ``quarantine``, ``history``, ``diff``, ``restore``,
``replay``, ``checkpoint``, ``vacuum``, ``forget``."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from lakehouse import graph
from lakehouse.cli.common import confirm, print_accounting, say, silver_tables
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError


def cmd_quarantine(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.audit import quarantine as q
    from lakehouse.layers.routing import load_plan
    pipeline = graph.build(config)
    tables = [q.find_table(pipeline, args.table)] if args.table else silver_tables(pipeline)
    if args.action == "list":
        for table in tables:
            rows = q.read_quarantine(load_plan(pipeline, table))
            open_rows = rows.filter(rows.column("resolution").is_null())
            say(f"silver.{table.quarantine_name}: {open_rows.num_rows:,} open, "
                 f"{rows.num_rows - open_rows.num_rows:,} resolved by replays")
            summary = q.rule_summary(rows)
            if summary:
                say(f"  {'rule':<34} {'records':>8}  example")
            for r in summary:
                say(f"  {r.rule:<34} {r.records:>8,}  {r.example[:90]}")
        return 0
    if len(tables) != 1:
        raise LakehouseError(ErrorCode.BAD_ARGUMENTS, f"say which table to {args.action}",
                             hint="e.g. lakehouse quarantine " + args.action + " orders")
    table = tables[0]
    selection = q.Selection(tuple(args.rule or ()), tuple(args.batch or ()),
                            tuple(_record(r) for r in args.record or ()), args.all)
    if args.action == "show":
        plan = load_plan(pipeline, table)
        rows = q.select(q.read_quarantine(plan),
                        selection if not selection.empty else q.Selection(everything=True))
        say(f"silver.{table.quarantine_name}: {rows.num_rows:,} open records match"
             + (f" (showing {args.limit})" if rows.num_rows > args.limit else ""))
        for rec in rows.slice(0, args.limit).to_pylist():
            value = _shown(rec["value"])
            say(f"- {rec['_topic']}:{rec['_partition']}:{rec['_offset']} (bronze v"
                 f"{rec['_bronze_version']}, batch {rec['batch_id']}, "
                 f"{rec['quarantined_at']:%Y-%m-%d %H:%M:%S}Z) {plan.key}={rec['event_id']}")
            for rule, reason in zip(rec["failed_rules"], rec["reasons"], strict=False):
                say(f"    {rule}: {reason}")
            say(f"    value: {value[:200]}{'...' if len(value) > 200 else ''}")
        return 0
    from lakehouse.spark import build_session, stop_session
    spark = build_session(config)
    try:
        report = q.replay(pipeline, table, selection, spark, printer=say)
    finally:
        stop_session(spark)
    say(report.describe())
    print_accounting(pipeline)
    return 0


def cmd_history(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.audit.timetravel import history
    from lakehouse.query import write_result
    rows = history(config, args.table)
    write_result(rows.slice(0, args.limit) if args.limit else rows, args.format, None)
    return 0


def cmd_diff(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.audit.timetravel import diff, parse_as_of
    from lakehouse.query import aligned, to_json
    result, old, new = diff(graph.build(config), args.table, parse_as_of(args.old), parse_as_of(args.new))
    parts = (("added", result.added), ("removed", result.removed), ("changed", result.changed))
    if args.format == "json":
        print(json.dumps({"table": args.table, "from": old, "to": new, "keys": result.keys,
                          **{k: json.loads(to_json(v)) for k, v in parts}},
                         ensure_ascii=False, indent=1))
        return 0
    print(result.describe(args.table, old, new))
    for title, rows in parts:
        if rows.num_rows:
            print(f"\n{title}:\n{aligned(rows, max_rows=args.limit)}")
    return 0


def cmd_restore(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.audit.retention import restore
    from lakehouse.audit.timetravel import open_as_of, parse_as_of, resolve, versions
    from lakehouse.catalog import split_name
    target = parse_as_of(args.to)
    current = open_as_of(config, args.table, None)
    version = resolve(versions(current), target, args.table)
    question = (f"restore {args.table} to the contents of version {version}? It is at "
                f"version {current.version()}; the restore adds version "
                f"{current.version() + 1} and time travel keeps every earlier one.")
    confirm(question, args.yes)
    done = restore(config, args.table, version, args.reason)
    say(f"{done.table}: version {done.version} restores the contents of version "
         f"{done.target} (was version {done.previous}); see it with "
         f"lakehouse history {done.table}")
    if split_name(args.table)[0] != "bronze":
        say("note: the streaming query's progress is unchanged (its checkpoint and the "
             "transaction ids in the log), so new batches apply on top of the restored "
             "contents")
    return 0


def cmd_replay(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.audit.replay import replay_bronze
    from lakehouse.audit.timetravel import parse_as_of
    from lakehouse.io.locks import table_locks
    from lakehouse.registry import BronzeTable
    pipeline = graph.build(config)
    query = pipeline.query(args.table)
    definition = query.definition
    if isinstance(definition, BronzeTable):
        if args.from_offsets is None and args.from_time is None:
            raise LakehouseError(ErrorCode.BAD_ARGUMENTS, "a bronze replay re-reads Kafka: "
                                 "give --from-offsets or --from-time")
        confirm(f"reset {args.table} to earlier Kafka offsets (stop its streaming query "
                 "first)?", args.yes)
        start: dict[int, int] | datetime
        if args.from_time:
            at = parse_as_of(args.from_time)
            if isinstance(at, int):
                raise LakehouseError(ErrorCode.TIME_BAD_AS_OF, "--from-time takes a time")
            start = at
        else:
            start = _partition_offsets(args.from_offsets)
        with table_locks(config.warehouse.root, [args.table], "lakehouse replay"):
            say(replay_bronze(pipeline, definition, start, say).describe())
        return 0
    if args.from_offsets is not None:
        raise LakehouseError(ErrorCode.BAD_ARGUMENTS, "--from-offsets is for bronze tables")
    if not args.into:
        confirm(f"replay {args.table} in place (stop its streaming query first)?", args.yes)
    with table_locks(config.warehouse.root, [] if args.into else [args.table],
                     "lakehouse replay"):
        _replay_in_spark(config, args, pipeline, query)
    return 0


def _replay_in_spark(config: Config, args: argparse.Namespace, pipeline: graph.Graph,
                     query: graph.Query) -> None:
    from lakehouse.audit.replay import first_version_at, replay_gold, replay_silver
    from lakehouse.audit.timetravel import parse_as_of
    from lakehouse.registry import GoldTable, SilverTable
    from lakehouse.spark import build_session, stop_session
    definition = query.definition
    spark = build_session(config)
    try:
        if isinstance(definition, SilverTable):
            first = args.from_bronze_version
            if args.from_time:
                at = parse_as_of(args.from_time)
                if isinstance(at, int):
                    raise LakehouseError(ErrorCode.TIME_BAD_AS_OF,
                                         "--from-time takes a time; use --from-bronze-version "
                                         "for a version")
                first = first_version_at(pipeline.node(query.input).uri, at,
                                         dict(config.warehouse.storage_options))
            report = replay_silver(spark, pipeline, definition, first, args.into, say)
            say(report.describe())
            readers = [q.name for q in pipeline.downstream(query.name)]
            if readers and not args.into:
                say(f"next: gold tables read {query.name} and must be replayed too: "
                     + ", ".join(f"lakehouse replay {r}" for r in readers))
        else:
            assert isinstance(definition, GoldTable)
            if args.from_bronze_version is not None or args.from_time:
                say("gold is recomputed whole from silver (exact either way); "
                     "--from-bronze-version / --from-time do not narrow it")
            say(replay_gold(spark, pipeline, definition, args.into, say).describe())
    finally:
        stop_session(spark)


def _partition_offsets(text: str) -> dict[int, int]:
    """``{"0": 120, "1": 0}`` (or ``{"<topic>": {...}}``) -> partition -> offset."""
    try:
        value = json.loads(text)
        if len(value) == 1 and isinstance(next(iter(value.values())), dict):
            value = next(iter(value.values()))
        return {int(p): int(o) for p, o in value.items()}
    except (ValueError, TypeError, AttributeError):
        raise LakehouseError(ErrorCode.BAD_ARGUMENTS, f"--from-offsets {text!r} is not a JSON "
                             "map of partition to offset", hint='e.g. \'{"0": 120, "1": 0}\'') \
            from None


def cmd_checkpoint_reset(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.io.checkpoints import damage, move_aside
    from lakehouse.io.locks import table_locks
    pipeline = graph.build(config)
    queries = [pipeline.query(name) for name in args.table]  # unknown: fails before a move
    confirm(f"move the checkpoints of {', '.join(args.table)} aside?", args.yes)
    with table_locks(config.warehouse.root, args.table, "lakehouse checkpoint reset"):
        for q in queries:
            problem = damage(q.checkpoint)
            aside = move_aside(q.checkpoint, "reset")
            if aside is None:
                say(f"{q.name}: has no checkpoint; the next run starts it from its table")
                continue
            say(f"{q.name}: checkpoint{' (' + problem + ')' if problem else ''} moved to "
                 f"{aside}; the next run resumes it from {RESUMES_FROM[q.layer]}")
    return 0


RESUMES_FROM = {graph.Layer.BRONZE: "the Kafka offsets the table holds",
                graph.Layer.SILVER: "its ledger (the bronze versions it has routed)",
                graph.Layer.GOLD: "the silver versions its commits record"}


def cmd_vacuum(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.audit.retention import vacuum
    from lakehouse.catalog import require_tables, table_names
    tables = args.table or table_names(config)
    require_tables(config, tables)
    pipeline = graph.build(config)
    for table in tables:
        done = vacuum(pipeline, table, args.retention_hours, dry_run=args.dry_run)
        verb = "would remove" if done.dry_run else "removed"
        kept = f"; kept the files of versions {done.kept_versions[0]}..{done.kept_versions[-1]}" \
               f" (not yet read by a streaming query)" if done.kept_versions else ""
        say(f"{table}: {verb} {len(done.files):,} files{kept}")
        for f in done.files[:args.list]:
            say(f"  {f}")
    return 0


def cmd_forget(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.audit.forget import forget, subject_tables, touched
    pipeline = graph.build(config)
    tables = touched(subject_tables(pipeline))
    if not tables:
        say("no contract marks a field pii: true; nothing holds personal data")
        return 0
    say(f"This erases the subject from {', '.join(tables)} and recomputes the gold tables "
         "reading them. Each of these tables is then vacuumed with retention 0: time travel "
         "to any earlier version of them will no longer be possible (the audit window does "
         "not apply).")
    confirm("erase the subject?", args.yes)
    say(forget(pipeline, args.subject, printer=say).describe())
    return 0


def _record(text: str) -> tuple[str, int, int]:
    topic, _, rest = text.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    if not topic or not partition.isdigit() or not rest.isdigit():
        raise LakehouseError(ErrorCode.CONFIG_BAD_VALUE,
                             f"--record {text!r} must be TOPIC:PARTITION:OFFSET")
    return topic, int(partition), int(rest)


def _shown(value: bytes | None) -> str:
    """A raw value for a terminal: its text when it is printable UTF-8, else its bytes in
    hex (an Avro payload, binary garbage), never raw control bytes."""
    if value is None:
        return "null (a tombstone)"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c in "\t\n" for c in text):
        return text
    return f"{len(value):,} bytes, hex {value[:100].hex(' ')}"


def register_quarantine(sub: Any) -> None:
    """``lakehouse quarantine``."""
    p = sub.add_parser("quarantine", help="see rejected records and replay them once fixed",
                       description="list: open quarantined records per failed rule. show: the "
                                   "records with every reason and the raw value. replay: "
                                   "re-check chosen records with the current contract and "
                                   "suite; those that pass go to silver exactly once.")
    p.add_argument("action", choices=["list", "show", "replay"])
    p.add_argument("table", nargs="?", help="silver table, e.g. orders (list: all if omitted)")
    p.add_argument("--rule", action="append", metavar="RULE",
                   help="records that failed this rule (repeatable), e.g. amount_in_range "
                        "or contract.type:amount")
    p.add_argument("--batch", action="append", type=int, metavar="ID",
                   help="records rejected by this silver batch (repeatable)")
    p.add_argument("--record", action="append", metavar="TOPIC:PARTITION:OFFSET",
                   help="one record by its Kafka coordinates (repeatable)")
    p.add_argument("--all", action="store_true", help="replay: every open record")
    p.add_argument("--limit", type=int, default=20, help="show: at most this many (20)")
    p.set_defaults(func=cmd_quarantine)


def register_history(sub: Any) -> None:
    """``lakehouse history``."""
    p = sub.add_parser("history", help="a table's versions: time, operation, rows, run ids",
                       description="Every version still in a table's Delta log, newest "
                                   "first: when, which operation, rows added / updated / "
                                   "removed, and the batch, run id, query and input range "
                                   "its commit recorded.")
    p.add_argument("table", help="layer.table")
    p.add_argument("--limit", type=int, default=0, help="only the newest N versions")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_history)


def register_diff(sub: Any) -> None:
    """``lakehouse diff``."""
    p = sub.add_parser("diff", help="rows added, removed and changed between two versions",
                       description="Compare two versions (or instants) of a table by its key: "
                                   "Kafka coordinates in bronze and quarantine, the contract "
                                   "key in silver, the merge keys in gold.")
    p.add_argument("table", help="layer.table")
    p.add_argument("--from", dest="old", required=True, metavar="VERSION|TIME")
    p.add_argument("--to", dest="new", required=True, metavar="VERSION|TIME")
    p.add_argument("--limit", type=int, default=20, help="rows shown per kind (default 20)")
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="table (summary and rows, default) or json (every row)")
    p.set_defaults(func=cmd_diff)


def register_restore(sub: Any) -> None:
    """``lakehouse restore``."""
    p = sub.add_parser("restore", help="make an earlier version the current one (asks first)",
                       description="Commit a new version with the contents of an earlier "
                                   "version (or instant). Recorded in the history with what "
                                   "it restored, from which version and why.")
    p.add_argument("table", help="layer.table")
    p.add_argument("--to", required=True, metavar="VERSION|TIME")
    p.add_argument("--reason", default="", help="why (kept in the commit metadata)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_restore)


def register_replay(sub: Any) -> None:
    """``lakehouse replay``."""
    p = sub.add_parser("replay", help="rebuild a silver or gold table from its inputs",
                       description="Reset a bronze table to earlier Kafka offsets (landing "
                                   "only what it does not hold), rebuild a silver table from "
                                   "bronze with the current "
                                   "contract and suite (silver and quarantine), or a gold "
                                   "table from silver with the current definition, as a new "
                                   "version of the same table (time travel keeps the old "
                                   "one) or into a side table. Exactly once; stop the "
                                   "table's streaming query first.")
    p.add_argument("table", help="bronze.<name>, silver.<name> or gold.<name>")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-offsets", metavar="JSON",
                       help='bronze: re-read Kafka from these offsets, e.g. \'{"0": 120}\' '
                            "(partitions not named start at their end)")
    start.add_argument("--from-bronze-version", type=int, metavar="V",
                       help="silver: re-route the records of bronze versions V.. only")
    start.add_argument("--from-time", metavar="T",
                       help="bronze: re-read Kafka from the first record at or after T; "
                            "silver: from the first bronze version committed at or after T")
    p.add_argument("--into", metavar="NAME",
                   help="write the rebuilt table to <layer>.NAME (and NAME_quarantine) instead")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_replay)


def register_checkpoint(sub: Any) -> None:
    """``lakehouse checkpoint``."""
    p = sub.add_parser("checkpoint", help="move a damaged streaming checkpoint aside",
                       description="Move the Spark checkpoints of these tables' queries "
                                   "aside (kept as <checkpoint>.reset-<time>); the next run "
                                   "resumes each table from its own commits, exactly once. "
                                   "The way out of LH-STREAM-003.")
    actions = p.add_subparsers(dest="action", required=True)
    reset = actions.add_parser("reset", help="move the checkpoints aside")
    reset.add_argument("table", nargs="+", help="bronze.<name>, silver.<name> or gold.<name>")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(func=cmd_checkpoint_reset)


def register_vacuum(sub: Any) -> None:
    """``lakehouse vacuum``."""
    p = sub.add_parser("vacuum", help="delete data files old versions no longer need",
                       description="Delete the data files that no version younger than the "
                                   "retention needs. The default retention is the audit "
                                   "horizon (retention.audit_horizon_days, 7 days): a shorter "
                                   "one is refused (LH-TIME-004); lakehouse forget is the one "
                                   "erasure. Files of versions a streaming query has not read "
                                   "yet are always kept.")
    p.add_argument("table", nargs="*", help="layer.table (default: every table)")
    p.add_argument("--retention-hours", type=float, metavar="H",
                   help="keep what versions younger than H hours need (default and least: "
                        "the audit horizon)")
    p.add_argument("--dry-run", action="store_true", help="list the files, delete nothing")
    p.add_argument("--list", type=int, default=0, metavar="N", help="print the first N files")
    p.set_defaults(func=cmd_vacuum)


def register_forget(sub: Any) -> None:
    """``lakehouse forget``."""
    p = sub.add_parser("forget", help="erase one data subject from every table (GDPR)",
                       description="Erase every record naming the subject in a pii field "
                                   "from bronze, silver and quarantine, recompute the gold "
                                   "tables reading them, vacuum those tables with retention "
                                   "0 (earlier versions become unreadable), and record the "
                                   "erasure in _system.forgotten (the pseudonym only). The "
                                   "pipelines must be stopped and caught up.")
    p.add_argument("--subject", required=True, help="the subject's id, e.g. a customer_id")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_forget)
