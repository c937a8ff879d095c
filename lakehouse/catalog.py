"""What tables the warehouse holds: ``layer.name`` -> Delta table, with basic stats."""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.config import Config
from lakehouse.io.delta import open_table

LAYERS = ("bronze", "silver", "gold")


@dataclass(frozen=True)
class TableStats:
    """Row count and current version of one table."""

    name: str
    uri: str
    rows: int
    version: int


def table_names(config: Config) -> list[str]:
    """``layer.name`` of every Delta table under the warehouse root (local warehouses)."""
    from pathlib import Path
    root = Path(config.warehouse.root)
    names = []
    for layer in LAYERS:
        base = root / layer
        if base.is_dir():
            names += [f"{layer}.{d.name}" for d in sorted(base.iterdir())
                      if (d / "_delta_log").is_dir()]
    return names


def table_stats(config: Config) -> list[TableStats]:
    """Stats of every table, counting rows from the Delta log's file statistics."""
    out = []
    for name in table_names(config):
        layer, table = name.split(".", 1)
        uri = config.warehouse.table_uri(layer, table)
        dt = open_table(uri, config.warehouse.storage_options)
        if dt is None:
            continue
        out.append(TableStats(name, uri, int(dt.count()), dt.version()))
    return out
