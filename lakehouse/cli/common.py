"""What every command group shares: printing, confirming, paths beside the warehouse."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse import graph
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError

if TYPE_CHECKING:
    from lakehouse.registry import SilverTable


def say(text: str) -> None:
    print(text, flush=True)


def confirm(question: str, yes: bool) -> None:
    """Ask in a terminal; without one, ``--yes`` is required."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise LakehouseError(ErrorCode.NOT_CONFIRMED, f"not confirmed: {question}",
                             hint="run it in a terminal to answer, or pass --yes")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise LakehouseError(ErrorCode.NOT_CONFIRMED, "not confirmed; nothing changed")


def print_tables(config: Config) -> None:
    from lakehouse.catalog import table_stats
    stats = table_stats(config)
    if not stats:
        say(f"no tables yet under {config.warehouse.root}")
        return
    say(f"{'table':<28} {'rows':>10} {'version':>8}  location")
    for s in stats:
        say(f"{s.name:<28} {s.rows:>10,} {s.version:>8}  {s.uri}")


def silver_tables(pipeline: graph.Graph) -> list[SilverTable]:
    from lakehouse.registry import SilverTable
    return [q.definition for q in pipeline.layer(graph.Layer.SILVER)
            if isinstance(q.definition, SilverTable)]


def print_accounting(pipeline: graph.Graph) -> None:
    """Per silver table: where every bronze record went, and the contract pass rate."""
    from lakehouse.layers.ledger import accounting
    for table in silver_tables(pipeline):
        acc = accounting(pipeline, table)
        if acc.bronze_rows:
            rate = 1 - (acc.quarantined / acc.bronze_rows)
            say(f"{acc.describe()}; pass rate {rate:.1%}")


def write_file(path: str, text: str) -> Path:
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


def seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def beside_warehouse(config: Config, name: str) -> str:
    """``name`` in the warehouse folder when it is on local disk, else in the current one."""
    from lakehouse.io.locks import lock_dir
    folder = lock_dir(config.warehouse.root)
    return str(folder.parent / name) if folder else name
