"""``lakehouse``: the command line of the streaming lakehouse.

One module per command group registers its subcommands and does their parsing and
printing: ``servers`` (broker, registry, storage, marquez, cluster), ``pipelines`` (contract,
topics, produce, run, verify, tables, demo, bench), ``audit`` (quarantine, history, diff,
restore, replay, checkpoint, vacuum, forget), ``evidence`` (the ``audit`` group: rules,
horizon, export, check) and ``observe`` (query, status, slo, report, lineage, explain).
Every command reads the configuration once (``--conf`` > ``LAKEHOUSE_CONF`` >
``conf/local.yaml``) and fails with a stable error code before starting anything if it
is wrong.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from lakehouse.cli import audit, evidence, observe, pipelines, servers
from lakehouse.config import load_config
from lakehouse.errors import LakehouseError


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

    servers.register_broker(sub)
    servers.register_registry(sub)
    servers.register_storage(sub)
    pipelines.register_contract(sub)
    servers.register_marquez(sub)
    servers.register_cluster(sub)
    pipelines.register_topics(sub)
    pipelines.register_produce(sub)
    pipelines.register_run(sub)
    audit.register_quarantine(sub)
    observe.register_query(sub)
    observe.register_status(sub)
    observe.register_slo(sub)
    observe.register_report(sub)
    audit.register_history(sub)
    audit.register_diff(sub)
    audit.register_restore(sub)
    audit.register_replay(sub)
    audit.register_checkpoint(sub)
    audit.register_vacuum(sub)
    audit.register_forget(sub)
    evidence.register_audit(sub)
    pipelines.register_verify(sub)
    observe.register_lineage(sub)
    observe.register_explain(sub)
    pipelines.register_tables(sub)
    pipelines.register_demo(sub)
    pipelines.register_bench(sub)
    return parser


READ_THE_WAREHOUSE = {"quarantine", "query", "status", "slo", "report", "history", "diff",
                      "restore", "replay", "checkpoint", "vacuum", "forget", "verify",
                      "explain", "tables"}
"""Commands that read the warehouse without starting servers: on an object store, each
checks first that the store answers (``run`` and ``demo`` start the embedded one). A
subcommand says so itself (``reads_warehouse``: ``audit rules``, not ``audit check``)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lakehouse`` command."""
    args = build_parser().parse_args(argv)
    logging.root.addFilter(_py4j_connection_tracebacks)
    try:
        config = load_config(args.conf)
        if args.command in READ_THE_WAREHOUSE or getattr(args, "reads_warehouse", False):
            servers.ensure_store(config)
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
