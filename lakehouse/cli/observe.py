"""Watching and reading: ``query``, ``status``, ``slo``, ``report``, ``lineage``,
``explain``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from lakehouse import graph
from lakehouse.cli.common import say, seconds, write_file
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError


def cmd_query(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.audit.timetravel import parse_as_of
    from lakehouse.query import run_query, write_result
    started = time.monotonic()
    result = run_query(config, args.sql, parse_as_of(args.as_of) if args.as_of else None)
    written = write_result(result, args.format, args.output)
    if written:
        say(f"{result.num_rows:,} rows -> {written} ({args.format}) in "
             f"{time.monotonic() - started:.2f}s")
    elif args.timing:
        print(f"({time.monotonic() - started:.3f}s)", file=sys.stderr)
    return 0


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.observe.figures import status_lines
    pipeline = graph.build(config)
    if not args.watch:
        say("\n".join(status_lines(pipeline, datetime.now(UTC))))
        return 0
    try:
        while True:  # home and clear, then the screen: a terminal shows it in place
            lines = status_lines(pipeline, datetime.now(UTC))
            say("\x1b[H\x1b[2J" + "\n".join(lines)
                 + f"\n\n(every {args.watch:g} s; Ctrl-C stops)")
            time.sleep(args.watch)
    except KeyboardInterrupt:  # the way to stop watching: no error
        return 0


def cmd_slo(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.observe.figures import describe_slos, slo_results
    results = slo_results(graph.build(config), datetime.now(UTC))
    say("\n".join(describe_slos(results, config.slo.window_minutes)))
    breached = [r.name for r in results if r.breached]
    if breached:
        print(f"breached: {', '.join(breached)}", file=sys.stderr)
    return 3 if breached else 0


def cmd_report(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.observe.report import read_report, render
    started = time.monotonic()
    now = datetime.now(UTC)
    say(f"reading the event log and silver's quality over the last "
         f"{config.slo.window_minutes:g} minutes ...")
    page = render(read_report(graph.build(config), now), config, now)
    out = write_file(args.output, page)
    say(f"report -> {out} ({len(page) / 1024:,.0f} KB) in {time.monotonic() - started:.1f}s")
    return 0


def cmd_lineage(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.lineage.graph import dot, html_page, text_tree
    graph = lineage_graph(config, args.events)
    if args.format == "dot":
        text = dot(graph)
    elif args.format == "html":
        text = html_page(graph, f"Lineage of {config.project} ({config.lineage_namespace})")
    else:
        text = text_tree(graph) + "\n"
    if args.output:
        write_file(args.output, text)
        say(f"{len(graph.jobs)} jobs, {len(graph.datasets)} datasets -> {args.output} "
             f"({args.format})")
    else:
        sys.stdout.write(text)
    return 0


def lineage_graph(config: Config, events: list[str] | None) -> Any:
    from lakehouse.batch import storage_dataset
    from lakehouse.catalog import split_name, table_names
    from lakehouse.lineage.graph import build, read_events
    paths = events or [config.lineage_file, config.listener_file]
    found = read_events(*paths)
    if not found:
        where = f"the file transport is off; events go to {config.lineage.http_url}" \
            if not config.lineage.file and config.lineage.http_url else \
            "run the pipelines first (lakehouse demo or lakehouse run)"
        raise LakehouseError(ErrorCode.LINEAGE_NO_EVENTS,
                             f"no lineage events in {' or '.join(map(str, paths))}",
                             hint=f"{where}; LAKEHOUSE_LINEAGE_DISABLED=true turns emission off",
                             file=str(paths[0]))
    labels = {storage_dataset(config.warehouse.table_uri(*split_name(n))).name: n
              for n in table_names(config)}
    return build(found, labels)


def cmd_explain(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.audit.explain import explain
    from lakehouse.audit.timetravel import parse_as_of
    result = explain(graph.build(config), args.table, parse_as_of(args.as_of) if args.as_of else args.version)
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.describe())
    return 0


def register_query(sub: Any) -> None:
    """``lakehouse query``."""
    p = sub.add_parser("query", help="run SQL over the tables (no JVM), print or save it",
                       description="Run one SQL statement (DuckDB dialect) over the warehouse. "
                                   "Tables are named layer.table: bronze.orders, "
                                   "silver.orders_quarantine, gold.revenue_by_category_5m, ...",
                       epilog='e.g. lakehouse query "SELECT category, sum(net_revenue) FROM '
                              'gold.revenue_by_category_5m GROUP BY 1 ORDER BY 2 DESC"')
    p.add_argument("sql", help="the query")
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table",
                   help="table (aligned, default), csv, json (an array of objects) or parquet")
    p.add_argument("--output", metavar="FILE", help="write to FILE instead of the terminal")
    p.add_argument("--timing", action="store_true", help="print the time taken to stderr")
    p.add_argument("--as-of", metavar="VERSION|TIME",
                   help="read every table as it was at this version, or at this instant "
                        "(ISO-8601; naive means UTC), e.g. 2026-11-20T18:00:00Z")
    p.set_defaults(func=cmd_query)


def register_status(sub: Any) -> None:
    """``lakehouse status``."""
    p = sub.add_parser("status", help="each pipeline: its job, newest batch, lag, freshness",
                       description="One screen from the event log (_system.events): each "
                                   "pipeline running or not (which process, on which host), "
                                   "its newest batch, how far behind its input it is, how "
                                   "fresh its data is; silver's pass and quarantine rates "
                                   "and duplicates over the SLO window (slo.window_minutes).")
    p.add_argument("--watch", type=seconds, nargs="?", const=5.0, default=0.0,
                   metavar="SECONDS", help="refresh every SECONDS (default 5) until Ctrl-C")
    p.set_defaults(func=cmd_status)


def register_slo(sub: Any) -> None:
    """``lakehouse slo``."""
    p = sub.add_parser("slo", help="judge the SLOs; exit 3 when one is breached",
                       description="Each objective under slo: in the config (gold freshness "
                                   "p95, silver pass rate, duplicate rate, Kafka lag p95) "
                                   "over the window, with its error-budget burn rate: the "
                                   "share of bad events over the share the objective allows. "
                                   "Exit 0 when every burn rate is at most 1, 3 when one is "
                                   "above (a scheduler alerts on it).")
    p.set_defaults(func=cmd_slo)


def register_report(sub: Any) -> None:
    """``lakehouse report``."""
    p = sub.add_parser("report", help="write one self-contained HTML report with plots",
                       description="The SLOs, the status screen and plots (throughput, lag, "
                                   "freshness, pass rate per rule, quarantine reasons, "
                                   "duplicate rate, time per batch phase) over the SLO window, "
                                   "in one HTML file with no script and no network access.")
    p.add_argument("--output", default="report.html", metavar="FILE",
                   help="where to write it (default report.html)")
    p.set_defaults(func=cmd_report)


def register_lineage(sub: Any) -> None:
    """``lakehouse lineage``."""
    p = sub.add_parser("lineage", help="draw the graph of jobs and datasets from the lineage",
                       description="Read the OpenLineage events the pipelines emitted (the "
                                   "file transport) and draw the graph: Kafka topics, the "
                                   "streaming jobs, the tables with their latest versions.")
    p.add_argument("--format", choices=["text", "dot", "html"], default="text",
                   help="text (a tree, default), dot (Graphviz) or html (a page with an SVG)")
    p.add_argument("--output", metavar="FILE", help="write to FILE instead of the terminal")
    p.add_argument("--events", metavar="FILE", action="append",
                   help="an events file (repeatable; default: the Spark listener's and the "
                        "project's, <warehouse>/_lineage/spark.jsonl and lakehouse.jsonl)")
    p.set_defaults(func=cmd_lineage)


def register_explain(sub: Any) -> None:
    """``lakehouse explain``."""
    p = sub.add_parser("explain", help="walk a table version back to its Kafka offsets",
                       description="From one version of a table, follow the input ranges its "
                                   "commits recorded (silver versions, bronze versions, Kafka "
                                   "offsets) and print what this commit added and what the "
                                   "whole table version was built from.",
                       epilog="e.g. lakehouse explain gold.revenue_by_category_5m --as-of "
                              "2026-11-24T18:00:00Z")
    p.add_argument("table", help="layer.table, e.g. gold.revenue_by_category_5m")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, help="the table version (default: the latest)")
    which.add_argument("--as-of", metavar="TIME",
                       help="the version current at this ISO-8601 instant (naive means UTC)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_explain)
