"""``lakehouse verify gold``: each gold table equals its recomputation from silver, as of
the silver version it has read (one batch query over silver, compared row by row by key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.sql import SparkSession

from lakehouse import graph
from lakehouse.aggregates import UPDATED_AT, recompute
from lakehouse.audit.timetravel import normalised
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta import read_table
from lakehouse.io.delta_log import open_table
from lakehouse.layers.gold import load_gold_plan, read_progress
from lakehouse.registry import GoldTable


@dataclass(frozen=True)
class GoldCheck:
    """A gold table compared with its recomputation from silver."""

    table: str
    silver_version: int | None
    rows: int
    only_in_gold: list[dict[str, Any]]
    only_in_recompute: list[dict[str, Any]]
    different: list[tuple[dict[str, Any], dict[str, Any]]]

    @property
    def equal(self) -> bool:
        """No difference at all."""
        return not (self.only_in_gold or self.only_in_recompute or self.different)

    def describe(self) -> str:
        """One line, plus a few differences if any."""
        at = f"silver version {self.silver_version}" if self.silver_version is not None \
            else "no silver data yet"
        if self.equal:
            return f"{self.table}: {self.rows:,} rows equal the recomputation from silver ({at})"
        lines = [f"{self.table}: DIFFERS from the recomputation from silver ({at}): "
                 f"{len(self.only_in_gold)} rows only in gold, {len(self.only_in_recompute)} "
                 f"only in the recomputation, {len(self.different)} with other values"]
        lines += [f"  only in gold: {_row(r)}" for r in self.only_in_gold[:5]]
        lines += [f"  only in recomputation: {_row(r)}" for r in self.only_in_recompute[:5]]
        lines += [f"  gold {_row(a)} != recomputed {_row(b)}" for a, b in self.different[:5]]
        return "\n".join(lines)


def _row(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items())


def compare(gold: pa.Table, expected: pa.Table, keys: Sequence[str], table: str,
            silver_version: int | None) -> GoldCheck:
    """Every difference between two versions of a table, matched by key (pure)."""
    columns = expected.column_names

    def by_key(data: pa.Table) -> dict[tuple[Any, ...], dict[str, Any]]:
        return {tuple(normalised(r[k]) for k in keys): {c: r[c] for c in columns}
                for r in data.select(columns).to_pylist()}

    mine, theirs = by_key(gold), by_key(expected)
    return GoldCheck(
        table, silver_version, gold.num_rows,
        [mine[k] for k in sorted(set(mine) - set(theirs), key=repr)],
        [theirs[k] for k in sorted(set(theirs) - set(mine), key=repr)],
        [(mine[k], theirs[k]) for k in sorted(set(mine) & set(theirs), key=repr)
         if mine[k] != theirs[k]])


def verify(spark: SparkSession, pipeline: graph.Graph, table: GoldTable) -> GoldCheck:
    """Compare the streamed table with one batch query over silver, as of the silver
    version the table has read."""
    plan = load_gold_plan(pipeline, table)
    gold = open_table(plan.uri, plan.storage_options)
    if gold is None:
        raise LakehouseError(ErrorCode.DELTA_TABLE_NOT_FOUND,
                             f"{table.qualified_name} does not exist yet",
                             hint="run the pipelines first (lakehouse run --until-idle)")
    version = read_progress(plan.uri, plan.storage_options)
    current = gold.to_pyarrow_table()
    if version is None:
        expected = current.schema.empty_table().drop_columns([UPDATED_AT])
    else:
        silver = read_table(spark, plan.silver_uri, version)
        expected = recompute(plan.agg, silver).toArrow()
    return compare(current, expected, plan.agg.output_keys, table.qualified_name, version)
