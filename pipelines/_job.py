"""The shared spark-submit entry of the layer jobs (``pipelines/<layer>.py``)."""

from __future__ import annotations

import argparse
import sys

from lakehouse.config import load_config
from lakehouse.errors import LakehouseError
from lakehouse.registry import discover_bronze, discover_gold, discover_silver
from lakehouse.runner import run


def layer_tables(layer: str) -> list[str]:
    """Qualified names of every table of ``layer``."""
    if layer == "bronze":
        return [t.qualified_name for t in discover_bronze()]
    if layer == "silver":
        return [t.qualified_name for t in discover_silver()]
    return [t.qualified_name for t in discover_gold()]


def main(layer: str, doc: str, argv: list[str] | None = None) -> int:
    """Parse the job's arguments and run the layer's streaming queries."""
    parser = argparse.ArgumentParser(prog=f"pipelines/{layer}.py", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", help="configuration file (default $LAKEHOUSE_CONF or "
                                       "conf/local.yaml)")
    parser.add_argument("--until-idle", action="store_true",
                        help="process what is available, then exit")
    parser.add_argument("--table", action="append",
                        help=f"only this {layer} table (repeatable)")
    args = parser.parse_args(argv)
    tables = [f"{layer}.{t.removeprefix(layer + '.')}" for t in args.table] if args.table \
        else layer_tables(layer)
    try:
        config = load_config(args.conf)
        run(config, until_idle=args.until_idle, tables=tables)
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
