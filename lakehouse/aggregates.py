"""Gold definitions as data: mergeable aggregates of silver rows, and rollups of them.

A gold table is an :class:`Aggregate`: rows grouped ``by`` key expressions, with
``measures`` whose partial results merge exactly (:class:`Count`, :class:`Sum`,
:class:`Min`, :class:`Max`), and ``derived`` columns computed from the merged measures.
Because every measure merges exactly, a micro-batch's partial aggregate merged into the
stored rows gives the same table as one batch query over all of silver, however late or
out of order events arrive.

Measures that do not merge (distinct counts, medians, averages of per-entity values)
take two stages: the :class:`Aggregate` keeps an exact, mergeable state per entity (for
example one row per (minute, user), or per session), and a :class:`Rollup` recomputes
the output groups a batch touched from their complete state rows. That stays exact
with no approximation bound.

Every function here is a pure DataFrame transformation; the streaming engine
(``lakehouse.layers.gold``) and the batch recomputation (``lakehouse verify gold``) apply the
same ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DataType

UPDATED_AT = "updated_at"


@dataclass(frozen=True)
class Measure:
    """A measure whose partial results merge exactly."""

    def partial(self) -> Column:
        """Aggregate expression over silver rows."""
        raise NotImplementedError

    def merge(self, name: str) -> Column:
        """Aggregate expression over partial results stored in column ``name`` (by default
        their sum)."""
        return F.sum(name)


@dataclass(frozen=True)
class Count(Measure):
    """Number of rows (matching ``where``); 0 for a group with none."""

    where: Column | None = None

    def partial(self) -> Column:
        return F.count_if(self.where) if self.where is not None else F.count(F.lit(1))


@dataclass(frozen=True)
class Sum(Measure):
    """Sum of ``column`` over rows (matching ``where``); 0 for a group with none."""

    column: str
    where: Column | None = None

    def partial(self) -> Column:
        value = F.col(self.column)
        if self.where is not None:
            value = F.when(self.where, value)
        return F.coalesce(F.sum(value), F.lit(0))


@dataclass(frozen=True)
class Min(Measure):
    """Smallest value of ``column``."""

    column: str

    def partial(self) -> Column:
        return F.min(self.column)

    def merge(self, name: str) -> Column:
        return F.min(name)


@dataclass(frozen=True)
class Max(Measure):
    """Largest value of ``column``."""

    column: str

    def partial(self) -> Column:
        return F.max(self.column)

    def merge(self, name: str) -> Column:
        return F.max(name)


@dataclass(frozen=True)
class Rollup:
    """Second stage: output groups recomputed from complete state rows.

    ``by``: output keys as expressions over state columns; ``aggregates``: any Spark
    aggregate over a group's state rows (exact: the group is always complete);
    ``derived``: row-wise expressions over keys and aggregates.
    """

    by: Mapping[str, Column]
    aggregates: Mapping[str, Column]
    derived: Mapping[str, Column] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        """The output key columns."""
        return list(self.by)


@dataclass(frozen=True)
class Aggregate:
    """Silver rows (matching ``where``) grouped ``by`` keys, with mergeable ``measures``.

    With a ``rollup`` these groups are the table's internal state and the rollup's
    groups are the table; without one, they are the table, plus ``derived`` columns.
    """

    by: Mapping[str, Column]
    measures: Mapping[str, Measure]
    derived: Mapping[str, Column] = field(default_factory=dict)
    where: Column | None = None
    rollup: Rollup | None = None

    @property
    def keys(self) -> list[str]:
        """The state's key columns."""
        return list(self.by)

    @property
    def output_keys(self) -> list[str]:
        """The key columns of the table analysts see."""
        return self.rollup.keys if self.rollup else self.keys


def tumbling(column: str, seconds: int) -> tuple[Column, Column]:
    """Start and end of the ``seconds``-wide event-time window holding ``column`` (UTC,
    aligned to the epoch, like Spark's ``window``)."""
    start = F.timestamp_seconds(F.floor(F.unix_seconds(F.col(column)) / seconds) * seconds)
    return start, start + F.expr(f"INTERVAL {seconds} SECONDS")


# -- pure transformations --------------------------------------------------------------

def partial(agg: Aggregate, rows: DataFrame) -> DataFrame:
    """One partial aggregate of ``rows`` per key: keys + measures."""
    if agg.where is not None:
        rows = rows.where(agg.where)
    return (rows.groupBy(*[e.alias(k) for k, e in agg.by.items()])
            .agg(*[m.partial().alias(n) for n, m in agg.measures.items()]))


def combine(agg: Aggregate, partials: DataFrame, types: Mapping[str, DataType]) -> DataFrame:
    """Merge partial aggregates of the same key into one (keys + measures). ``types``:
    each measure's partial type, kept so the stored schema never widens."""
    return (partials.groupBy(*agg.keys)
            .agg(*[m.merge(n).cast(types[n]).alias(n) for n, m in agg.measures.items()]))


def finish(agg: Aggregate, states: DataFrame) -> DataFrame:
    """Add the derived columns (row-wise) to merged aggregates."""
    return states.select(*agg.keys, *agg.measures,
                         *[e.alias(n) for n, e in agg.derived.items()])


def with_rollup_keys(agg: Aggregate, states: DataFrame) -> DataFrame:
    """State rows plus the output key they roll up into (stored with the state, so the
    rows of an output group are found without recomputing it)."""
    assert agg.rollup is not None
    return states.select(*agg.keys, *agg.measures,
                         *[e.alias(_rk(k)) for k, e in agg.rollup.by.items()])


def roll(rollup: Rollup, states: DataFrame) -> DataFrame:
    """Output rows of the groups whose complete state rows are given."""
    grouped = (states.groupBy(*[F.col(_rk(k)).alias(k) for k in rollup.keys])
               .agg(*[e.alias(n) for n, e in rollup.aggregates.items()]))
    return grouped.select(*rollup.keys, *rollup.aggregates,
                          *[e.alias(n) for n, e in rollup.derived.items()])


def recompute(agg: Aggregate, rows: DataFrame) -> DataFrame:
    """The whole table from all of its silver rows in one batch query (no updated_at)."""
    states = partial(agg, rows)
    if agg.rollup is None:
        return finish(agg, states)
    return roll(agg.rollup, with_rollup_keys(agg, states))


def rollup_key_columns(agg: Aggregate) -> list[str]:
    """Names of the rollup-key columns stored with the state."""
    return [_rk(k) for k in agg.rollup.keys] if agg.rollup else []


def _rk(key: str) -> str:
    return f"_rollup_{key}"
