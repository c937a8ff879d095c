"""The shared spark-submit entry of the layer jobs (``pipelines/<layer>.py``)."""

from __future__ import annotations

import argparse
import sys

from lakehouse import graph
from lakehouse.cli.servers import ensure_store
from lakehouse.config import load_config
from lakehouse.errors import LakehouseError
from lakehouse.runner import run


def main(layer: str, doc: str, argv: list[str] | None = None) -> int:
    """Parse the job's arguments and run the layer's streaming queries."""
    parser = argparse.ArgumentParser(prog=f"pipelines/{layer}_job.py", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", help="configuration file (default $LAKEHOUSE_CONF or "
                                       "conf/local.yaml)")
    parser.add_argument("--until-idle", action="store_true",
                        help="process what is available, then exit")
    parser.add_argument("--table", action="append",
                        help=f"only this {layer} table (repeatable)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.conf)
        ensure_store(config)
        pipeline = graph.build(config)
        if args.table:
            tables = [f"{layer}.{t.removeprefix(layer + '.')}" for t in args.table]
        else:
            tables = [q.name for q in pipeline.layer(graph.Layer(layer))]
            for line in pipeline.warnings():
                print(f"warning: {line}")
        run(pipeline, until_idle=args.until_idle, tables=tables)
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
