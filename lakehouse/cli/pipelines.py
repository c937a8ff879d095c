"""Running the pipelines: ``contract``, ``topics``, ``produce``, ``run``, ``verify``,
``tables``, ``demo``, ``bench``."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lakehouse import graph
from lakehouse.cli.common import beside_warehouse, print_accounting, print_tables, say, write_file
from lakehouse.cli.observe import lineage_graph
from lakehouse.cli.servers import ensure_broker, ensure_registry, ensure_store
from lakehouse.config import COMPATIBILITY_LEVELS, FORMATS, Config
from lakehouse.errors import ErrorCode, LakehouseError


def cmd_contract(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.schemas import check
    results = check(config, args.against, args.compatibility)
    for result in results:
        for line in result.describe():
            say(line)
    broken = [r for r in results if r.status == "breaks"]
    if broken:
        raise LakehouseError(
            ErrorCode.CONTRACT_INCOMPATIBLE,
            f"{len(broken)} contract(s) change in a way {broken[0].level} forbids: "
            f"{', '.join(r.name for r in broken)}",
            hint="give a new field a default (or make it optional), keep removed fields "
                 "optional, and add a new field instead of changing a type; or version the "
                 "topic (a new topic and subject) for a breaking change")
    return 0


def cmd_topics(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.io.kafka_admin import admin_client, list_topics
    from lakehouse.runner import ensure_source_topics
    say(ensure_broker(config))
    for name in ensure_source_topics(config, config.source_names):
        say(f"created topic {name}")
    topics = list_topics(admin_client(config.kafka.bootstrap_servers,
                                      config.kafka.client_properties),
                         config.kafka.bootstrap_servers, config.kafka.client_properties)
    for name in config.source_names:
        source = config.source(name)
        say(f"{name:<14} {source.topic:<24} {topics.get(source.topic, 0)} partitions")
    return 0


def cmd_produce(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.generator import generate, load_shape
    from lakehouse.io.event_files import line_records, read_lines
    from lakehouse.io.kafka_producer import produce
    from lakehouse.runner import ensure_source_topics
    from lakehouse.schemas import encoding_for
    source = config.source(args.source)
    fmt = args.format or source.format
    # Everything that can refuse the command does so before a topic is created.
    shape = load_shape(config.expectations_dir, args.source)
    lines = read_lines(Path(args.from_file)) if args.from_file else None
    say(ensure_broker(config))
    if fmt == "avro":
        if source.format != "avro":
            say(f"warning: {args.source} is configured as {source.format}; silver will "
                 f"quarantine these Avro records (set sources.{args.source}.format: avro)")
        config = _as_avro(config, args.source)
        say(ensure_registry(config, [args.source]) or "")
    ensure_source_topics(config, [args.source])
    encoding = encoding_for(config, args.source, fmt)
    started = time.monotonic()
    if lines is not None:
        records = line_records(lines, shape.contract.key,
                               encoding.encode if fmt == "avro" else None)
        total, origin = len(lines), f"from {args.from_file}"
    else:
        records = generate(shape, args.count, args.seed, args.faults, encoding=encoding)
        total, origin = args.count, f"seed {args.seed}, faults {args.faults:.0%}"
    sent = produce(config.kafka.bootstrap_servers, source.topic, records,
                   config.kafka.client_properties,
                   progress=lambda n: say(f"  produced {n:,}/{total:,}"))
    took = time.monotonic() - started
    say(f"produced {sent:,} {args.source} events ({fmt}) to {source.topic} in {took:.1f}s "
         f"({origin})")
    return 0


def _as_avro(config: Config, source: str) -> Config:
    """``config`` with ``source`` in Avro (``produce --format avro`` on a JSON source)."""
    import dataclasses

    from lakehouse.config import SourceSettings
    sources = dict(config.sources)
    sources[source] = dataclasses.replace(sources.get(source, SourceSettings()), format="avro")
    return dataclasses.replace(config, sources=sources)


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.runner import run, selected_silver, silver_sources
    pipeline = graph.build(config)
    if store := ensure_store(config, start=True):
        say(store)
    say(ensure_broker(config))
    registry = ensure_registry(config, silver_sources(config,
                                                      selected_silver(pipeline, args.table)))
    if registry:
        say(registry)
    summary = run(pipeline, until_idle=args.until_idle, tables=args.table, printer=say)
    say(f"done in {summary.seconds:.1f}s")
    print_tables(config)
    print_accounting(pipeline)
    return 0


def cmd_tables(config: Config, args: argparse.Namespace) -> int:
    print_tables(config)
    return 0


def cmd_verify(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.audit.verify import verify
    from lakehouse.registry import GoldTable
    from lakehouse.spark import build_session, stop_session
    pipeline = graph.build(config)
    chosen = pipeline.select(args.table) if args.table else pipeline.layer(graph.Layer.GOLD)
    tables = [q.definition for q in chosen if isinstance(q.definition, GoldTable)]
    spark = build_session(config)
    try:
        checks = [verify(spark, pipeline, t) for t in tables]
    finally:
        stop_session(spark)
    for check in checks:
        say(check.describe())
    bad = [c.table for c in checks if not c.equal]
    if bad:
        raise LakehouseError(ErrorCode.GOLD_MISMATCH,
                             f"{', '.join(bad)} differ from the recomputation from silver",
                             hint="report it with the lines above; `lakehouse replay` (next "
                                  "release) rebuilds a table from silver")
    return 0


def cmd_demo(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.generator import generate, load_shape
    from lakehouse.io.kafka_producer import produce
    from lakehouse.runner import ensure_source_topics, run
    from lakehouse.schemas import encoding_for
    started = time.monotonic()
    pipeline = graph.build(config)
    sources = config.source_names
    shapes = {name: load_shape(config.expectations_dir, name) for name in sources}
    if store := ensure_store(config, start=True):
        say(f"1/4 {store}")
    say(f"1/4 broker: {ensure_broker(config)}")
    registry = ensure_registry(config, list(sources))
    if registry:
        say(f"1/4 {registry}")
    ensure_source_topics(config, sources)
    seed = int(time.time())
    encodings = {name: encoding_for(config, name) for name in sources}

    def send(count: int, seed: int, step: str) -> None:
        for name in sources:
            source = config.source(name)
            n = produce(config.kafka.bootstrap_servers, source.topic,
                        generate(shapes[name], count, seed, args.faults,
                                 encoding=encodings[name]),
                        config.kafka.client_properties)
            say(f"{step} produced {n:,} {name} events ({source.format}, faults "
                 f"{args.faults:.0%}) to {source.topic}")

    live: list[datetime] = []

    def produce_live() -> None:
        say("4/4 live: the pipelines keep running; producing more events to measure "
             "produce -> gold freshness")
        live.append(datetime.now(UTC))
        send(args.live_count, seed + 1, "4/4")

    # The events go in once the pipelines run: what the freshness figures and the SLO
    # measure is the pipelines, not the wait for a JVM to start.
    say("2/4 starting the pipelines; the events follow once they run")
    run(pipeline, until_idle=True, printer=say,
        then=[lambda: send(args.count, seed, "3/4"),
              *([produce_live] if args.live_count else [])])
    say(f"demo finished in {time.monotonic() - started:.1f}s; tables:")
    print_tables(config)
    print_accounting(pipeline)
    if live:
        _print_freshness(pipeline, live[0])
    if config.lineage.enabled and config.lineage.file:
        from lakehouse.lineage.graph import text_tree
        say(f"lineage (OpenLineage events in {config.listener_file} and "
             f"{config.lineage_file}; "
             "lakehouse lineage --format html --output lineage.html draws it):")
        print(text_tree(lineage_graph(config, None)))
    if config.observe.events:
        _demo_observed(pipeline, args.report or beside_warehouse(config, "report.html"))
    return 0


def _demo_observed(pipeline: graph.Graph, report: str) -> None:
    """The demo's last words: the status screen, the SLOs and the report."""
    from lakehouse.observe.figures import describe_slos, slo_results, status_lines
    from lakehouse.observe.report import read_report, render
    now, config = datetime.now(UTC), pipeline.config
    say("\n".join(["", *status_lines(pipeline, now), ""]))
    say("\n".join(describe_slos(slo_results(pipeline, now), config.slo.window_minutes)))
    out = write_file(report, render(read_report(pipeline, now), config, now))
    say(f"report (plots of throughput, lag, freshness, quality): {out}")


def cmd_bench(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.bench.report import table
    from lakehouse.bench.run import FULL, QUICK, run_bench
    result = run_bench(QUICK if args.quick else FULL, say,
                       Path(args.work_dir) if args.work_dir else None, args.object_store)
    print(table(result))
    if args.output:
        write_file(args.output, json.dumps(result, indent=2, default=str) + "\n")
        say(f"results -> {args.output}")
    return 0


def _print_freshness(pipeline: graph.Graph, since: datetime) -> None:
    from lakehouse.observe.freshness import freshness
    from lakehouse.registry import GoldTable
    for q in pipeline.layer(graph.Layer.GOLD):
        assert isinstance(q.definition, GoldTable)
        say(freshness(pipeline, q.definition, since).describe())


def register_contract(sub: Any) -> None:
    """``lakehouse contract``."""
    p = sub.add_parser("contract", help="check contract changes against the deployed ones",
                       description="Compare every contract (expectations/*.contract.yaml) "
                                   "with the deployed one and fail, naming the field and the "
                                   "rule, on a change the configured compatibility level "
                                   "(schema_registry.compatibility) forbids.")
    actions = p.add_subparsers(dest="action", required=True)
    checking = actions.add_parser("check", help="compare with a git ref or the registry")
    checking.add_argument("--against", default="HEAD",
                          help="a git ref (default HEAD: your uncommitted edits), or "
                               "'registry' for the Avro sources' registered schemas")
    checking.add_argument("--compatibility", choices=COMPATIBILITY_LEVELS,
                          help="the level to judge by (default: the configured one)")
    p.set_defaults(func=cmd_contract)


def register_topics(sub: Any) -> None:
    """``lakehouse topics``."""
    p = sub.add_parser("topics", help="create the configured topics if missing and list them",
                       description="Create every configured source topic that is missing, with "
                                   "its configured partition count, and list them.")
    p.set_defaults(func=cmd_topics)


def register_produce(sub: Any) -> None:
    """``lakehouse produce``."""
    p = sub.add_parser("produce", help="send synthetic events, or your own, to a source's topic",
                       description="Produce synthetic events made from the source's contract "
                                   "and suite (deterministic per seed) to the topic of SOURCE, "
                                   "optionally with faults mixed in; or, with --from, your own "
                                   "events from a JSON-lines file.")
    p.add_argument("source", help="a source, e.g. orders or clickstream (every contract in "
                                  "expectations/ declares one)")
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="send the events of FILE instead: JSON lines, one event per line, the "
                        "Kafka key from the contract's key field; a line that is not JSON is "
                        "sent as it is (silver quarantines it)")
    p.add_argument("--count", type=int, default=1000, help="number of events (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--faults", type=float, nargs="?", const=0.1, default=0.0,
                   help="share of bad events: duplicates, malformed JSON, missing fields, "
                        "out-of-range values, wrong types, late events; in Avro: a wrong "
                        "magic byte, an unknown schema id, a truncated payload (0.1 if "
                        "given alone)")
    p.add_argument("--format", choices=FORMATS,
                   help="json or avro (Confluent wire format, the schema registered from "
                        "the contract); default: the source's configured format")
    p.set_defaults(func=cmd_produce)


def register_run(sub: Any) -> None:
    """``lakehouse run``."""
    p = sub.add_parser("run", help="run the streaming pipelines",
                       description="Run the pipelines. Without --until-idle they run until "
                                   "Ctrl-C or SIGTERM and stop cleanly; restarting resumes from "
                                   "the checkpoints, exactly once.")
    p.add_argument("--until-idle", action="store_true",
                   help="process everything available now, then exit")
    p.add_argument("--table", action="append", metavar="NAME",
                   help="only this table (repeatable), e.g. --table orders")
    p.set_defaults(func=cmd_run)


def register_verify(sub: Any) -> None:
    """``lakehouse verify``."""
    p = sub.add_parser("verify", help="check gold against a batch recomputation from silver",
                       description="Recompute each gold table from silver (as of the silver "
                                   "version it has read) with one batch query and report every "
                                   "row that differs from the streamed table. Exit 2 if any.")
    p.add_argument("layer", choices=["gold"])
    p.add_argument("--table", action="append", metavar="NAME",
                   help="only this gold table (repeatable)")
    p.set_defaults(func=cmd_verify)


def register_tables(sub: Any) -> None:
    """``lakehouse tables``."""
    p = sub.add_parser("tables", help="list the tables with row counts and versions")
    p.set_defaults(func=cmd_tables)


def register_demo(sub: Any) -> None:
    """``lakehouse demo``."""
    p = sub.add_parser("demo", help="broker up, produce events with faults, run until idle",
                       description="The whole slice on the embedded defaults: start the broker, "
                                   "produce events with faults to every source, run the "
                                   "pipelines until idle, produce a live batch while they run, "
                                   "and print the table counts, the accounting and the "
                                   "produce -> gold freshness.")
    p.add_argument("--count", type=int, default=3000, help="events per source (default 3000)")
    p.add_argument("--faults", type=float, default=0.1, help="share of bad events (default 0.1)")
    p.add_argument("--live-count", type=int, default=300,
                   help="events per source produced once the pipelines have caught up, to "
                        "measure produce -> gold freshness (default 300; 0 skips it)")
    p.add_argument("--report", metavar="FILE",
                   help="where the demo writes its HTML report (default: report.html in "
                        "the warehouse folder)")
    p.set_defaults(func=cmd_demo)


def register_bench(sub: Any) -> None:
    """``lakehouse bench``."""
    p = sub.add_parser("bench", help="measure the pipelines against this machine's limit",
                       description="A benchmark, not a test: on a broker and warehouse of its "
                                   "own (a temporary directory), the limit (Kafka's consumer; "
                                   "consume + Parquet with pyarrow), bronze, silver and gold "
                                   "records/s on a backlog beside the bare designs (bare "
                                   "bronze, bare parse), bronze and silver again with the "
                                   "chain's digests off and on, the naive GX pattern against the "
                                   "project's silver, produce -> gold freshness under steady "
                                   "load in each shape, without the lineage listener and for "
                                   "the bare chained design, with where each micro-batch's "
                                   "time goes, the sustainable rate, batch time as silver "
                                   "grows, peak memory and core-seconds per million events. "
                                   "Prints a table; --output writes the JSON.")
    p.add_argument("--quick", action="store_true",
                   help="100,000 orders, 20 s of load at 1,000/s, rates up to 5,000/s and "
                        "up to 1M rows in silver (about 9 minutes) instead of 1,000,000 "
                        "orders, 2 minutes at 5,000/s, rates up to 20,000/s and up to 20M rows")
    p.add_argument("--output", help="write the results as JSON to this file")
    p.add_argument("--work-dir", help="where the temporary broker and warehouse go "
                                      "(default: the system's temporary directory)")
    p.add_argument("--object-store", action="store_true",
                   help="the warehouse (tables, checkpoints, the peers' tables and the limit's "
                        "Parquet files) on an S3 store of the run's own (SeaweedFS) instead "
                        "of local disk")
    p.set_defaults(func=cmd_bench)
