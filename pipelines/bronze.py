"""spark-submit entry point: land Kafka sources in their bronze Delta tables.

    spark-submit --py-files dist/lakehouse.zip pipelines/bronze.py \\
        --conf conf/cluster.yaml [--until-idle] [--table orders]

Runs exactly what ``lakehouse run`` runs (bronze layer); the master and resources come
from spark-submit, everything else from the config file.
"""

from __future__ import annotations

import argparse
import sys

from lakehouse.config import load_config
from lakehouse.errors import LakehouseError
from lakehouse.runner import run


def main(argv: list[str] | None = None) -> int:
    """Parse the job's arguments and run the bronze queries."""
    parser = argparse.ArgumentParser(prog="pipelines/bronze.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", help="configuration file (default $LAKEHOUSE_CONF or "
                                       "conf/local.yaml)")
    parser.add_argument("--until-idle", action="store_true",
                        help="process what is available, then exit")
    parser.add_argument("--table", action="append", help="only this bronze table (repeatable)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.conf)
        run(config, until_idle=args.until_idle, tables=args.table)
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
