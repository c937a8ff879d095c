"""``lakehouse``: the command line of the streaming lakehouse.

Subcommands: ``broker up|down|status``, ``cluster up|down|status|submit``, ``topics``,
``produce``, ``run``, ``quarantine``, ``query``, ``verify gold``, ``tables`` and ``demo``.
Every command reads the configuration once (``--conf`` > ``LAKEHOUSE_CONF`` >
``conf/local.yaml``) and fails with a stable error code before starting anything if it is
wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse import graph
from lakehouse.config import COMPATIBILITY_LEVELS, FORMATS, Config, load_config
from lakehouse.errors import ErrorCode, LakehouseError

if TYPE_CHECKING:
    from lakehouse.apicurio import EmbeddedRegistry
    from lakehouse.broker import EmbeddedBroker
    from lakehouse.registry import SilverTable


def _say(text: str) -> None:
    print(text, flush=True)


def _embedded_broker(config: Config, port: int | None = None) -> EmbeddedBroker:
    """The warehouse's embedded broker, on ``port`` instead of the configured one if given."""
    from lakehouse.broker import EmbeddedBroker
    bootstrap = config.kafka.bootstrap_servers
    if port is not None:
        bootstrap = f"{bootstrap.rpartition(':')[0]}:{port}"
    embedded = config.kafka.embedded
    return EmbeddedBroker(bootstrap, config.broker_data_dir, embedded.startup_timeout_seconds,
                          embedded.sasl_users, embedded.admin_user, embedded.topic_acls)


def ensure_broker(config: Config) -> str:
    """Start the warehouse's broker if the config wants one, else check the cluster answers."""
    from lakehouse.io.kafka_admin import admin_client, list_topics
    if config.kafka.embedded.enabled:
        return _embedded_broker(config).up().describe()
    list_topics(admin_client(config.kafka.bootstrap_servers, config.kafka.client_properties),
                config.kafka.bootstrap_servers)
    return f"using the Kafka cluster at {config.kafka.bootstrap_servers}"


def cmd_broker(config: Config, args: argparse.Namespace) -> int:
    if not config.kafka.embedded.enabled:
        raise LakehouseError(
            ErrorCode.BROKER_NOT_EMBEDDED,
            f"the broker is external ({config.kafka.bootstrap_servers}); nothing to "
            f"{args.action}", hint="unset LAKEHOUSE_KAFKA_BOOTSTRAP to use the embedded one")
    broker = _embedded_broker(config, args.port)
    return _control(broker, args.action, "broker", f"bootstrap servers: {broker.bootstrap}")


def _control(server: EmbeddedBroker | EmbeddedRegistry, action: str, name: str,
             reach: str) -> int:
    """``<name> up|down|status`` of a local server: ``reach`` says, after ``up``, how
    clients reach it; ``status`` exits 0 if it answers, 3 if not."""
    if action == "up":
        _say(f"{name} {server.up().describe()}")
        _say(reach)
    elif action == "down":
        _say(f"{name} stopped" if server.down() else f"{name} was not running")
    else:
        status = server.status()
        _say(f"{name} {status.describe()}")
        return 0 if status.answering else 3
    return 0


def _embedded_registry(config: Config) -> EmbeddedRegistry:
    """The warehouse's embedded schema registry, at the configured URL's host and port."""
    from urllib.parse import urlsplit

    from lakehouse.apicurio import EmbeddedRegistry
    url = urlsplit(config.schema_registry.url)
    return EmbeddedRegistry(url.hostname or "127.0.0.1", url.port or 80,
                            config.registry_data_dir,
                            config.schema_registry.embedded.startup_timeout_seconds)


def ensure_registry(config: Config, sources: list[str]) -> str | None:
    """Start the warehouse's registry if an Avro source among ``sources`` needs it and the
    config wants one embedded; None when no source is Avro."""
    if not any(config.source(s).format == "avro" for s in sources):
        return None
    if config.schema_registry.embedded.enabled:
        return f"schema registry {_embedded_registry(config).up().describe()}"
    return f"using the schema registry at {config.schema_registry.url}"


def cmd_registry(config: Config, args: argparse.Namespace) -> int:
    if not config.schema_registry.embedded.enabled:
        raise LakehouseError(
            ErrorCode.REGISTRY_NOT_EMBEDDED,
            f"the schema registry is external ({config.schema_registry.url}); nothing to "
            f"{args.action}", hint="unset LAKEHOUSE_SCHEMA_REGISTRY_URL to use the embedded one")
    registry = _embedded_registry(config)
    return _control(registry, args.action, "schema registry",
                    f"Confluent-compatible API: {registry.url}")


def cmd_contract(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.schemas import check
    results = check(config, args.against, args.compatibility)
    for result in results:
        for line in result.describe():
            _say(line)
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


def cmd_marquez(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.io.storage import join
    from lakehouse.lineage.marquez import Marquez
    server = Marquez(args.home, join(config.warehouse.root, "_marquez"), port=args.port,
                     admin_port=args.port + 1)
    if args.action == "up":
        _say(f"marquez {server.up().describe()}")
        _say(f"send the lineage there with `lineage: {{http_url: {server.url}}}` in the "
             f"config; browse {server.url}/api/v1/namespaces")
    elif args.action == "down":
        _say("marquez stopped" if server.down() else "marquez was not running")
    else:
        status = server.status()
        _say(f"marquez {status.describe()}")
        return 0 if status.healthy else 3
    return 0


def cmd_cluster(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.cluster import (
        LAYERS,
        SHORT_JVM_OPTIONS,
        WORKER_CORES,
        WORKER_MEMORY,
        LocalCluster,
        cluster_data_dir,
        spark_home,
        submit,
    )
    data_dir = Path(cluster_data_dir(config))
    cluster = LocalCluster(data_dir, workers=args.workers)
    if args.action != "submit" and (args.layers or args.master):
        raise LakehouseError(ErrorCode.BAD_ARGUMENTS,
                             f"layers and --master go with `cluster submit`, not {args.action}")
    if args.action == "up":
        _say(f"starting a Spark standalone cluster from {spark_home()}: a master and "
             f"{args.workers} workers ({WORKER_CORES} core, {WORKER_MEMORY} each) ...")
        status = cluster.up()
        _say(f"cluster {status.describe()}")
        _say(f"master URL: {status.master_url}")
        _say(f"web UI: {status.web_ui}")
        _say("submit the layer jobs with: lakehouse cluster submit bronze silver gold")
    elif args.action == "down":
        _say("cluster stopped" if cluster.down() else "cluster was not running")
    elif args.action == "status":
        status = cluster.status()
        _say(f"cluster {status.describe()}")
        for w in status.workers:
            _say(f"  worker {w.id} {w.state} ({w.cores} cores, {w.memory_mb} MB)")
        return 0 if status.healthy else 3
    else:
        unknown = [layer for layer in args.layers if layer not in LAYERS]
        if unknown:
            raise LakehouseError(ErrorCode.BAD_ARGUMENTS,
                                 f"unknown layer {', '.join(unknown)}; the jobs are "
                                 f"{', '.join(LAYERS)}",
                                 hint="e.g. lakehouse cluster submit bronze silver gold")
        master = args.master or cluster.status().master_url
        if not master:
            raise LakehouseError(ErrorCode.CLUSTER_NOT_RUNNING,
                                 f"no cluster runs for {config.warehouse.root} (data in "
                                 f"{data_dir})",
                                 hint="start one with `lakehouse cluster up`, or name a "
                                      "running one with --master spark://HOST:PORT")
        # The local cluster's short jobs run their JVMs light (a real cluster's as it has them).
        options = "" if args.master else SHORT_JVM_OPTIONS
        for layer in args.layers or LAYERS:
            _say(f"submitting pipelines/{layer}_job.py to {master} (until idle) ...")
            took = submit(layer, master, config, data_dir, java_options=options, printer=_say)
            _say(f"{layer} job finished in {took:.1f}s")
        _print_tables(config)
        if "silver" in (args.layers or LAYERS):
            _print_accounting(config)
    return 0


def cmd_topics(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.io.kafka_admin import admin_client, list_topics
    from lakehouse.runner import ensure_source_topics
    _say(ensure_broker(config))
    for name in ensure_source_topics(config, config.source_names):
        _say(f"created topic {name}")
    topics = list_topics(admin_client(config.kafka.bootstrap_servers,
                                      config.kafka.client_properties),
                         config.kafka.bootstrap_servers)
    for name in config.source_names:
        source = config.source(name)
        _say(f"{name:<14} {source.topic:<24} {topics.get(source.topic, 0)} partitions")
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
    _say(ensure_broker(config))
    if fmt == "avro":
        if source.format != "avro":
            _say(f"warning: {args.source} is configured as {source.format}; silver will "
                 f"quarantine these Avro records (set sources.{args.source}.format: avro)")
        config = _as_avro(config, args.source)
        _say(ensure_registry(config, [args.source]) or "")
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
                   progress=lambda n: _say(f"  produced {n:,}/{total:,}"))
    took = time.monotonic() - started
    _say(f"produced {sent:,} {args.source} events ({fmt}) to {source.topic} in {took:.1f}s "
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
    _say(ensure_broker(config))
    registry = ensure_registry(config, silver_sources(config,
                                                      selected_silver(config, args.table)))
    if registry:
        _say(registry)
    summary = run(config, until_idle=args.until_idle, tables=args.table, printer=_say)
    _say(f"done in {summary.seconds:.1f}s")
    _print_tables(config)
    _print_accounting(config)
    return 0


def cmd_tables(config: Config, args: argparse.Namespace) -> int:
    _print_tables(config)
    return 0


def _print_tables(config: Config) -> None:
    from lakehouse.catalog import table_stats
    stats = table_stats(config)
    if not stats:
        _say(f"no tables yet under {config.warehouse.root}")
        return
    _say(f"{'table':<28} {'rows':>10} {'version':>8}  location")
    for s in stats:
        _say(f"{s.name:<28} {s.rows:>10,} {s.version:>8}  {s.uri}")


def cmd_quarantine(config: Config, args: argparse.Namespace) -> int:
    from lakehouse import quarantine as q
    from lakehouse.silver import load_plan
    tables = [q.find_table(config, args.table)] if args.table else _silver_tables(config)
    if args.action == "list":
        for table in tables:
            rows = q.read_quarantine(load_plan(config, table))
            open_rows = rows.filter(rows.column("resolution").is_null())
            _say(f"silver.{table.quarantine_name}: {open_rows.num_rows:,} open, "
                 f"{rows.num_rows - open_rows.num_rows:,} resolved by replays")
            summary = q.rule_summary(rows)
            if summary:
                _say(f"  {'rule':<34} {'records':>8}  example")
            for r in summary:
                _say(f"  {r.rule:<34} {r.records:>8,}  {r.example[:90]}")
        return 0
    if len(tables) != 1:
        raise LakehouseError(ErrorCode.BAD_ARGUMENTS, f"say which table to {args.action}",
                             hint="e.g. lakehouse quarantine " + args.action + " orders")
    table = tables[0]
    selection = q.Selection(tuple(args.rule or ()), tuple(args.batch or ()),
                            tuple(_record(r) for r in args.record or ()), args.all)
    if args.action == "show":
        plan = load_plan(config, table)
        rows = q.select(q.read_quarantine(plan),
                        selection if not selection.empty else q.Selection(everything=True))
        _say(f"silver.{table.quarantine_name}: {rows.num_rows:,} open records match"
             + (f" (showing {args.limit})" if rows.num_rows > args.limit else ""))
        for rec in rows.slice(0, args.limit).to_pylist():
            value = _shown(rec["value"])
            _say(f"- {rec['_topic']}:{rec['_partition']}:{rec['_offset']} (bronze v"
                 f"{rec['_bronze_version']}, batch {rec['batch_id']}, "
                 f"{rec['quarantined_at']:%Y-%m-%d %H:%M:%S}Z) {plan.key}={rec['event_id']}")
            for rule, reason in zip(rec["failed_rules"], rec["reasons"], strict=False):
                _say(f"    {rule}: {reason}")
            _say(f"    value: {value[:200]}{'...' if len(value) > 200 else ''}")
        return 0
    from lakehouse.spark import build_session, stop_session
    spark = build_session(config)
    try:
        report = q.replay(config, table, selection, spark, printer=_say)
    finally:
        stop_session(spark)
    _say(report.describe())
    _print_accounting(config)
    return 0


def cmd_query(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.query import run_query, write_result
    from lakehouse.timetravel import parse_as_of
    started = time.monotonic()
    result = run_query(config, args.sql, parse_as_of(args.as_of) if args.as_of else None)
    written = write_result(result, args.format, args.output)
    if written:
        _say(f"{result.num_rows:,} rows -> {written} ({args.format}) in "
             f"{time.monotonic() - started:.2f}s")
    elif args.timing:
        print(f"({time.monotonic() - started:.3f}s)", file=sys.stderr)
    return 0


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.observe.figures import status_lines
    if not args.watch:
        _say("\n".join(status_lines(config, datetime.now(UTC))))
        return 0
    try:
        while True:  # home and clear, then the screen: a terminal shows it in place
            lines = status_lines(config, datetime.now(UTC))
            _say("\x1b[H\x1b[2J" + "\n".join(lines)
                 + f"\n\n(every {args.watch:g} s; Ctrl-C stops)")
            time.sleep(args.watch)
    except KeyboardInterrupt:  # the way to stop watching: no error
        return 0


def cmd_slo(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.observe.figures import describe_slos, slo_results
    results = slo_results(config, datetime.now(UTC))
    _say("\n".join(describe_slos(results, config.slo.window_minutes)))
    breached = [r.name for r in results if r.breached]
    if breached:
        print(f"breached: {', '.join(breached)}", file=sys.stderr)
    return 3 if breached else 0


def cmd_report(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.observe.report import read_report, render
    started = time.monotonic()
    now = datetime.now(UTC)
    _say(f"reading the event log and silver's quality over the last "
         f"{config.slo.window_minutes:g} minutes ...")
    page = render(read_report(config, now), config, now)
    out = _write_file(args.output, page)
    _say(f"report -> {out} ({len(page) / 1024:,.0f} KB) in {time.monotonic() - started:.1f}s")
    return 0


def cmd_history(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.query import write_result
    from lakehouse.timetravel import history
    rows = history(config, args.table)
    write_result(rows.slice(0, args.limit) if args.limit else rows, args.format, None)
    return 0


def cmd_diff(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.query import aligned, to_json
    from lakehouse.timetravel import diff, parse_as_of
    result, old, new = diff(config, args.table, parse_as_of(args.old), parse_as_of(args.new))
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
    from lakehouse.catalog import split_name
    from lakehouse.timetravel import open_as_of, parse_as_of, resolve, restore, versions
    target = parse_as_of(args.to)
    current = open_as_of(config, args.table, None)
    version = resolve(versions(current), target, args.table)
    question = (f"restore {args.table} to the contents of version {version}? It is at "
                f"version {current.version()}; the restore adds version "
                f"{current.version() + 1} and time travel keeps every earlier one.")
    _confirm(question, args.yes)
    done = restore(config, args.table, version, args.reason)
    _say(f"{done.table}: version {done.version} restores the contents of version "
         f"{done.target} (was version {done.previous}); see it with "
         f"lakehouse history {done.table}")
    if split_name(args.table)[0] != "bronze":
        _say("note: the streaming query's progress is unchanged (its checkpoint and the "
             "transaction ids in the log), so new batches apply on top of the restored "
             "contents")
    return 0


def cmd_replay(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.io.locks import table_locks
    from lakehouse.registry import BronzeTable
    from lakehouse.replay import replay_bronze
    from lakehouse.timetravel import parse_as_of
    pipeline = graph.build(config)
    query = pipeline.query(args.table)
    definition = query.definition
    if isinstance(definition, BronzeTable):
        if args.from_offsets is None and args.from_time is None:
            raise LakehouseError(ErrorCode.BAD_ARGUMENTS, "a bronze replay re-reads Kafka: "
                                 "give --from-offsets or --from-time")
        _confirm(f"reset {args.table} to earlier Kafka offsets (stop its streaming query "
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
            _say(replay_bronze(config, definition, start, _say).describe())
        return 0
    if args.from_offsets is not None:
        raise LakehouseError(ErrorCode.BAD_ARGUMENTS, "--from-offsets is for bronze tables")
    if not args.into:
        _confirm(f"replay {args.table} in place (stop its streaming query first)?", args.yes)
    with table_locks(config.warehouse.root, [] if args.into else [args.table],
                     "lakehouse replay"):
        _replay_in_spark(config, args, pipeline, query)
    return 0


def _replay_in_spark(config: Config, args: argparse.Namespace, pipeline: graph.Graph,
                     query: graph.Query) -> None:
    from lakehouse.registry import GoldTable, SilverTable
    from lakehouse.replay import first_version_at, replay_gold, replay_silver
    from lakehouse.spark import build_session, stop_session
    from lakehouse.timetravel import parse_as_of
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
            report = replay_silver(spark, config, definition, first, args.into, _say)
            _say(report.describe())
            readers = [q.name for q in pipeline.downstream(query.name)]
            if readers and not args.into:
                _say(f"next: gold tables read {query.name} and must be replayed too: "
                     + ", ".join(f"lakehouse replay {r}" for r in readers))
        else:
            assert isinstance(definition, GoldTable)
            if args.from_bronze_version is not None or args.from_time:
                _say("gold is recomputed whole from silver (exact either way); "
                     "--from-bronze-version / --from-time do not narrow it")
            _say(replay_gold(spark, config, definition, args.into, _say).describe())
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


def _confirm(question: str, yes: bool) -> None:
    """Ask in a terminal; without one, ``--yes`` is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise LakehouseError(ErrorCode.NOT_CONFIRMED, f"not confirmed: {question}",
                             hint="run it in a terminal to answer, or pass --yes")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise LakehouseError(ErrorCode.NOT_CONFIRMED, "not confirmed; nothing changed")


def cmd_checkpoint_reset(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.io.checkpoints import damage, move_aside
    from lakehouse.io.locks import table_locks
    pipeline = graph.build(config)
    queries = [pipeline.query(name) for name in args.table]  # unknown: fails before a move
    _confirm(f"move the checkpoints of {', '.join(args.table)} aside?", args.yes)
    with table_locks(config.warehouse.root, args.table, "lakehouse checkpoint reset"):
        for q in queries:
            problem = damage(q.checkpoint)
            aside = move_aside(q.checkpoint, "reset")
            if aside is None:
                _say(f"{q.name}: has no checkpoint; the next run starts it from its table")
                continue
            _say(f"{q.name}: checkpoint{' (' + problem + ')' if problem else ''} moved to "
                 f"{aside}; the next run resumes it from {RESUMES_FROM[q.layer]}")
    return 0


RESUMES_FROM = {graph.Layer.BRONZE: "the Kafka offsets the table holds",
                graph.Layer.SILVER: "its ledger (the bronze versions it has routed)",
                graph.Layer.GOLD: "the silver versions its commits record"}


def cmd_vacuum(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.catalog import require_tables, table_names
    from lakehouse.timetravel import vacuum
    tables = args.table or table_names(config)
    require_tables(config, tables)
    for table in tables:
        done = vacuum(config, table, args.retention_hours, force=args.force,
                      dry_run=args.dry_run)
        verb = "would remove" if done.dry_run else "removed"
        kept = f"; kept the files of versions {done.kept_versions[0]}..{done.kept_versions[-1]}" \
               f" (not yet read by a streaming query)" if done.kept_versions else ""
        _say(f"{table}: {verb} {len(done.files):,} files{kept}")
        for f in done.files[:args.list]:
            _say(f"  {f}")
    return 0


def cmd_forget(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.forget import forget, subject_tables, touched
    tables = touched(subject_tables(config))
    if not tables:
        _say("no contract marks a field pii: true; nothing holds personal data")
        return 0
    _say(f"This erases the subject from {', '.join(tables)} and recomputes the gold tables "
         "reading them. Each of these tables is then vacuumed with retention 0: time travel "
         "to any earlier version of them will no longer be possible (the audit window does "
         "not apply).")
    _confirm("erase the subject?", args.yes)
    _say(forget(config, args.subject, printer=_say).describe())
    return 0


def cmd_verify(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.gold import verify
    from lakehouse.registry import GoldTable
    from lakehouse.spark import build_session, stop_session
    pipeline = graph.build(config)
    chosen = pipeline.select(args.table) if args.table else pipeline.layer(graph.Layer.GOLD)
    tables = [q.definition for q in chosen if isinstance(q.definition, GoldTable)]
    spark = build_session(config)
    try:
        checks = [verify(spark, config, t) for t in tables]
    finally:
        stop_session(spark)
    for check in checks:
        _say(check.describe())
    bad = [c.table for c in checks if not c.equal]
    if bad:
        raise LakehouseError(ErrorCode.GOLD_MISMATCH,
                             f"{', '.join(bad)} differ from the recomputation from silver",
                             hint="report it with the lines above; `lakehouse replay` (next "
                                  "release) rebuilds a table from silver")
    return 0


def _silver_tables(config: Config) -> list[SilverTable]:
    from lakehouse.registry import SilverTable
    return [q.definition for q in graph.build(config).layer(graph.Layer.SILVER)
            if isinstance(q.definition, SilverTable)]


def _record(text: str) -> tuple[str, int, int]:
    topic, _, rest = text.rpartition(":")
    topic, _, partition = topic.rpartition(":")
    if not topic or not partition.isdigit() or not rest.isdigit():
        raise LakehouseError(ErrorCode.CONFIG_BAD_VALUE,
                             f"--record {text!r} must be TOPIC:PARTITION:OFFSET")
    return topic, int(partition), int(rest)


def _print_accounting(config: Config) -> None:
    """Per silver table: where every bronze record went, and the contract pass rate."""
    from lakehouse.silver import accounting
    for table in _silver_tables(config):
        acc = accounting(config, table)
        if acc.bronze_rows:
            rate = 1 - (acc.quarantined / acc.bronze_rows)
            _say(f"{acc.describe()}; pass rate {rate:.1%}")


def cmd_demo(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.generator import generate, load_shape
    from lakehouse.io.kafka_producer import produce
    from lakehouse.runner import ensure_source_topics, run
    from lakehouse.schemas import encoding_for
    started = time.monotonic()
    sources = config.source_names
    shapes = {name: load_shape(config.expectations_dir, name) for name in sources}
    _say(f"1/4 broker: {ensure_broker(config)}")
    registry = ensure_registry(config, list(sources))
    if registry:
        _say(f"1/4 {registry}")
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
            _say(f"{step} produced {n:,} {name} events ({source.format}, faults "
                 f"{args.faults:.0%}) to {source.topic}")

    live: list[datetime] = []

    def produce_live() -> None:
        _say("4/4 live: the pipelines keep running; producing more events to measure "
             "produce -> gold freshness")
        live.append(datetime.now(UTC))
        send(args.live_count, seed + 1, "4/4")

    # The events go in once the pipelines run: what the freshness figures and the SLO
    # measure is the pipelines, not the wait for a JVM to start.
    _say("2/4 starting the pipelines; the events follow once they run")
    run(config, until_idle=True, printer=_say,
        then=[lambda: send(args.count, seed, "3/4"),
              *([produce_live] if args.live_count else [])])
    _say(f"demo finished in {time.monotonic() - started:.1f}s; tables:")
    _print_tables(config)
    _print_accounting(config)
    if live:
        _print_freshness(config, live[0])
    if config.lineage.enabled and config.lineage.file:
        from lakehouse.lineage.graph import text_tree
        _say(f"lineage (OpenLineage events in {config.listener_file} and "
             f"{config.lineage_file}; "
             "lakehouse lineage --format html --output lineage.html draws it):")
        print(text_tree(_lineage_graph(config, None)))
    if config.observe.events:
        _demo_observed(config, args.report or _beside_warehouse(config, "report.html"))
    return 0


def _demo_observed(config: Config, report: str) -> None:
    """The demo's last words: the status screen, the SLOs and the report."""
    from lakehouse.observe.figures import describe_slos, slo_results, status_lines
    from lakehouse.observe.report import read_report, render
    now = datetime.now(UTC)
    _say("\n".join(["", *status_lines(config, now), ""]))
    _say("\n".join(describe_slos(slo_results(config, now), config.slo.window_minutes)))
    out = _write_file(report, render(read_report(config, now), config, now))
    _say(f"report (plots of throughput, lag, freshness, quality): {out}")


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


def _write_file(path: str, text: str) -> Path:
    """Write ``text`` to ``path`` (its folder created); a clear error if it cannot be."""
    out = Path(path).resolve()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise LakehouseError(ErrorCode.BAD_ARGUMENTS,
                             f"cannot write {out}: {exc.strerror or exc}",
                             hint="choose a file in a folder this user can write") from None
    return out


def _seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _beside_warehouse(config: Config, name: str) -> str:
    """``name`` in the warehouse folder when it is on local disk, else in the current one."""
    from lakehouse.io.locks import lock_dir
    folder = lock_dir(config.warehouse.root)
    return str(folder.parent / name) if folder else name


def cmd_lineage(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.lineage.graph import dot, html_page, text_tree
    graph = _lineage_graph(config, args.events)
    if args.format == "dot":
        text = dot(graph)
    elif args.format == "html":
        text = html_page(graph, f"Lineage of {config.project} ({config.lineage_namespace})")
    else:
        text = text_tree(graph) + "\n"
    if args.output:
        _write_file(args.output, text)
        _say(f"{len(graph.jobs)} jobs, {len(graph.datasets)} datasets -> {args.output} "
             f"({args.format})")
    else:
        sys.stdout.write(text)
    return 0


def _lineage_graph(config: Config, events: list[str] | None) -> Any:
    from lakehouse.catalog import split_name, table_names
    from lakehouse.lineage.datasets import storage_dataset
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
    from lakehouse.lineage.explain import explain
    from lakehouse.timetravel import parse_as_of
    result = explain(config, args.table, parse_as_of(args.as_of) if args.as_of else args.version)
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.describe())
    return 0


def cmd_bench(config: Config, args: argparse.Namespace) -> int:
    from lakehouse.bench.report import table
    from lakehouse.bench.run import FULL, QUICK, run_bench
    result = run_bench(QUICK if args.quick else FULL, _say,
                       Path(args.work_dir) if args.work_dir else None)
    print(table(result))
    if args.output:
        _write_file(args.output, json.dumps(result, indent=2, default=str) + "\n")
        _say(f"results -> {args.output}")
    return 0


def _print_freshness(config: Config, since: datetime) -> None:
    from lakehouse.freshness import freshness
    from lakehouse.registry import GoldTable
    for q in graph.build(config).layer(graph.Layer.GOLD):
        assert isinstance(q.definition, GoldTable)
        _say(freshness(config, q.definition, since).describe())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="lakehouse",
        description="Streaming lakehouse: Kafka events land exactly once in bronze Delta "
                    "tables, silver enforces contracts, gold keeps exact aggregates.",
        epilog="Config: --conf FILE, else $LAKEHOUSE_CONF, else conf/local.yaml. "
               "$LAKEHOUSE_KAFKA_BOOTSTRAP points at a real cluster; $LAKEHOUSE_WAREHOUSE "
               "moves the tables.")
    parser.add_argument("--conf", help="configuration file (YAML)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("broker", help="start, stop or inspect the warehouse's Kafka broker",
                       description="Control the warehouse's embedded broker: a single-node "
                                   "Apache Kafka (KRaft), data and log under "
                                   "<warehouse>/_broker. Not used when "
                                   "LAKEHOUSE_KAFKA_BOOTSTRAP is set.")
    p.add_argument("action", choices=["up", "down", "status"],
                   help="up: start and wait until it answers (refused if another process "
                        "holds the port); down: stop gracefully; status: exit 0 if it "
                        "answers, 3 if not")
    p.add_argument("--port", type=int,
                   help="listen on this port instead of the one in kafka.bootstrap_servers")
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser("registry", help="start, stop or inspect the warehouse's schema registry",
                       description="Control the warehouse's embedded schema registry: Apicurio "
                                   "Registry serving the Confluent-compatible API, schemas "
                                   "under <warehouse>/_registry. Not used when "
                                   "LAKEHOUSE_SCHEMA_REGISTRY_URL is set.")
    p.add_argument("action", choices=["up", "down", "status"],
                   help="up: start and wait until it answers; down: stop gracefully; "
                        "status: exit 0 if it answers, 3 if not")
    p.set_defaults(func=cmd_registry)

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

    p = sub.add_parser("marquez", help="start, stop or inspect a local Marquez lineage server",
                       description="A local Marquez (the OpenLineage reference server) with "
                                   "its own PostgreSQL, data under <warehouse>/_marquez, to "
                                   "browse the lineage the pipelines send it. Marquez is not "
                                   "on Maven Central here: point --home or MARQUEZ_HOME at a "
                                   "Marquez API build (docs/lineage-facets.md).")
    p.add_argument("action", choices=["up", "down", "status"],
                   help="up: start and wait until healthy; down: stop Marquez and its "
                        "PostgreSQL; status: exit 0 if healthy, 3 if not")
    p.add_argument("--home", help="the Marquez API build (default $MARQUEZ_HOME)")
    p.add_argument("--port", type=int, default=5000,
                   help="API port (default 5000; the admin port is the next one)")
    p.set_defaults(func=cmd_marquez)

    p = sub.add_parser("cluster", help="a local Spark standalone cluster; submit the jobs to it",
                       description="Control the warehouse's local Spark standalone cluster (a "
                                   "master and workers from the pyspark installation, state "
                                   "and logs under <warehouse>/_cluster), and run the "
                                   "pipelines/ layer jobs on it with spark-submit, one after "
                                   "another, each until idle.",
                       epilog="e.g. lakehouse cluster up && lakehouse cluster submit bronze "
                              "silver gold && lakehouse cluster down")
    p.add_argument("action", choices=["up", "down", "status", "submit"],
                   help="up: start and wait until every worker is ALIVE; down: stop the "
                        "workers and the master; status: exit 0 if every worker is ALIVE, 3 "
                        "if not; submit: spark-submit the layer jobs (--until-idle)")
    p.add_argument("layers", nargs="*", metavar="LAYER",
                   help="submit: bronze, silver and/or gold, in that order (default: all three)")
    p.add_argument("--workers", type=int, default=2, help="up: number of workers (default 2)")
    p.add_argument("--master", metavar="URL",
                   help="submit: to this master (e.g. spark://host:7077) instead of the "
                        "local cluster")
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("topics", help="create the configured topics if missing and list them",
                       description="Create every configured source topic that is missing, with "
                                   "its configured partition count, and list them.")
    p.set_defaults(func=cmd_topics)

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

    p = sub.add_parser("run", help="run the streaming pipelines",
                       description="Run the pipelines. Without --until-idle they run until "
                                   "Ctrl-C or SIGTERM and stop cleanly; restarting resumes from "
                                   "the checkpoints, exactly once.")
    p.add_argument("--until-idle", action="store_true",
                   help="process everything available now, then exit")
    p.add_argument("--table", action="append", metavar="NAME",
                   help="only this table (repeatable), e.g. --table orders")
    p.set_defaults(func=cmd_run)

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

    p = sub.add_parser("status", help="each pipeline: its job, newest batch, lag, freshness",
                       description="One screen from the event log (_system.events): each "
                                   "pipeline running or not (which process, on which host), "
                                   "its newest batch, how far behind its input it is, how "
                                   "fresh its data is; silver's pass and quarantine rates "
                                   "and duplicates over the SLO window (slo.window_minutes).")
    p.add_argument("--watch", type=_seconds, nargs="?", const=5.0, default=0.0,
                   metavar="SECONDS", help="refresh every SECONDS (default 5) until Ctrl-C")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("slo", help="judge the SLOs; exit 3 when one is breached",
                       description="Each objective under slo: in the config (gold freshness "
                                   "p95, silver pass rate, duplicate rate, Kafka lag p95) "
                                   "over the window, with its error-budget burn rate: the "
                                   "share of bad events over the share the objective allows. "
                                   "Exit 0 when every burn rate is at most 1, 3 when one is "
                                   "above (a scheduler alerts on it).")
    p.set_defaults(func=cmd_slo)

    p = sub.add_parser("report", help="write one self-contained HTML report with plots",
                       description="The SLOs, the status screen and plots (throughput, lag, "
                                   "freshness, pass rate per rule, quarantine reasons, "
                                   "duplicate rate, time per batch phase) over the SLO window, "
                                   "in one HTML file with no script and no network access.")
    p.add_argument("--output", default="report.html", metavar="FILE",
                   help="where to write it (default report.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("history", help="a table's versions: time, operation, rows, run ids",
                       description="Every version still in a table's Delta log, newest "
                                   "first: when, which operation, rows added / updated / "
                                   "removed, and the batch, run id, query and input range "
                                   "its commit recorded.")
    p.add_argument("table", help="layer.table")
    p.add_argument("--limit", type=int, default=0, help="only the newest N versions")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=cmd_history)

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

    p = sub.add_parser("restore", help="make an earlier version the current one (asks first)",
                       description="Commit a new version with the contents of an earlier "
                                   "version (or instant). Recorded in the history with what "
                                   "it restored, from which version and why.")
    p.add_argument("table", help="layer.table")
    p.add_argument("--to", required=True, metavar="VERSION|TIME")
    p.add_argument("--reason", default="", help="why (kept in the commit metadata)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_restore)

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

    p = sub.add_parser("vacuum", help="delete data files old versions no longer need",
                       description="Delete the data files that no version younger than the "
                                   "retention needs. The default retention is the audit "
                                   "window (retention.audit_window_hours, 168 h): a shorter "
                                   "one is refused unless --force. Files of versions a "
                                   "streaming query has not read yet are always kept.")
    p.add_argument("table", nargs="*", help="layer.table (default: every table)")
    p.add_argument("--retention-hours", type=float, metavar="H",
                   help="keep what versions younger than H hours need (default: the audit "
                        "window)")
    p.add_argument("--force", action="store_true",
                   help="allow a retention shorter than the audit window")
    p.add_argument("--dry-run", action="store_true", help="list the files, delete nothing")
    p.add_argument("--list", type=int, default=0, metavar="N", help="print the first N files")
    p.set_defaults(func=cmd_vacuum)

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

    p = sub.add_parser("verify", help="check gold against a batch recomputation from silver",
                       description="Recompute each gold table from silver (as of the silver "
                                   "version it has read) with one batch query and report every "
                                   "row that differs from the streamed table. Exit 2 if any.")
    p.add_argument("layer", choices=["gold"])
    p.add_argument("--table", action="append", metavar="NAME",
                   help="only this gold table (repeatable)")
    p.set_defaults(func=cmd_verify)

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

    p = sub.add_parser("tables", help="list the tables with row counts and versions")
    p.set_defaults(func=cmd_tables)

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

    p = sub.add_parser("bench", help="measure the pipelines against this machine's limit",
                       description="A benchmark, not a test: on a broker and warehouse of its "
                                   "own (a temporary directory), the limit (Kafka's consumer; "
                                   "consume + Parquet with pyarrow), bronze, silver and gold "
                                   "records/s on a backlog beside the bare designs (bare "
                                   "bronze, bare parse), the naive GX pattern against the "
                                   "project's silver, produce -> gold freshness under steady "
                                   "load in each shape, without the lineage listener and for "
                                   "the bare chained design, with where each micro-batch's "
                                   "time goes, the sustainable rate, batch time as silver "
                                   "grows, peak memory and core-seconds per million events. "
                                   "Prints a table; --output writes the JSON.")
    p.add_argument("--quick", action="store_true",
                   help="100,000 orders, 20 s of load at 1,000/s, rates up to 5,000/s and "
                        "up to 1M rows in silver (about 6 minutes) instead of 1,000,000 "
                        "orders, 2 minutes at 5,000/s, rates up to 20,000/s and up to 20M rows")
    p.add_argument("--output", help="write the results as JSON to this file")
    p.add_argument("--work-dir", help="where the temporary broker and warehouse go "
                                      "(default: the system's temporary directory)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lakehouse`` command."""
    args = build_parser().parse_args(argv)
    logging.root.addFilter(_py4j_connection_tracebacks)
    try:
        config = load_config(args.conf)
        return int(args.func(config, args))
    except LakehouseError as exc:
        died = _driver_jvm_exited()
        print(f"error: {died}\n  while: {exc}" if died else f"error: {exc}", file=sys.stderr)
        return (died or exc).exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        died = _driver_jvm_exited(wait=10.0)  # an unexpected error: is the JVM going?
        if died is None:
            raise
        print(f"error: {died}", file=sys.stderr)
        return 2


def _py4j_connection_tracebacks(record: logging.LogRecord) -> bool:
    """Drop what py4j logs on the root logger when a call to the JVM fails on its socket
    (a traceback, from ``logging.exception``): the failing call raises as well, and
    ``main`` reports that once, as LH-JVM-002 when the JVM is gone."""
    return not (record.name == "root" and f"{os.sep}py4j{os.sep}" in record.pathname)


def _driver_jvm_exited(wait: float = 0.0) -> LakehouseError | None:
    """Why every Spark call failed, when the cause is the driver JVM gone (only a command
    that started Spark can have one)."""
    if "pyspark" not in sys.modules:
        return None
    from lakehouse.spark import driver_jvm_exited
    return driver_jvm_exited(wait)


def entry() -> None:
    """The ``lakehouse`` console script: ``main``, then a hard exit.

    Everything is committed and the Spark session stopped by the time ``main`` returns.
    Exiting without running C++ static destructors avoids a known abort at interpreter
    shutdown ("terminate called without an active exception", apache/arrow#34314,
    delta-io/delta-rs#2184) when native thread pools are torn down in the wrong order,
    which would turn a successful run into exit code -6.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
