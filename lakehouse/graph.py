"""The pipeline graph: every table the project builds, and how they connect.

Built once per command, at its entry point, from the table definitions (``bronze/``, ``silver/``, ``gold/``)
and the config: each table's layer and role, the query that writes it and that query's
checkpoint, the tables (or Kafka topic) it reads, its storage URI and the columns that
identify its rows. The command hands it down: the runner, replay, quarantine, forget,
time travel, freshness, explain, status and the report ask it (and its ``config``)
instead of building or re-deriving any of this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.quality.contract import load_contract
from lakehouse.registry import (
    BronzeTable,
    GoldTable,
    SilverTable,
    default_bronze,
    default_silver,
    discover_bronze,
    discover_gold,
    discover_silver,
)

COORDINATES = ("_topic", "_partition", "_offset")
"""The Kafka coordinates silver's rows and quarantine records carry."""
KAFKA_COORDINATES = ("topic", "partition", "offset")


class Layer(StrEnum):
    """The medallion layers, in the order data flows through them."""

    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"


class Role(StrEnum):
    """What a table is to the query that writes it."""

    TABLE = "table"
    """The table a definition declares."""
    QUARANTINE = "quarantine"
    QUALITY = "quality"
    LEDGER = "ledger"


Definition = BronzeTable | SilverTable | GoldTable


@dataclass(frozen=True)
class Node:
    """One table of the graph."""

    name: str
    """``layer.table``, as commands and queries name it."""
    layer: Layer
    role: Role
    uri: str
    queries: tuple[str, ...]
    """The streaming queries that write it (``silver.orders`` for its quarantine too;
    every silver query for ``silver._quality`` and ``silver._batches``)."""
    inputs: tuple[str, ...]
    """What those queries read: ``source:<name>`` (a configured Kafka source) for bronze,
    else table names."""
    keys: tuple[str, ...]
    """The columns identifying a row; empty where only the definition knows them at run
    time (gold's merge keys, which every MERGE commit records as ``lakehouse.keys``)."""


@dataclass(frozen=True)
class Query:
    """One streaming query: the definition it runs, what it reads, what it writes."""

    name: str
    layer: Layer
    definition: Definition
    input: str
    checkpoint: str
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Skipped:
    """A table this deployment does not run, and why (its source is disabled in the
    config or declared by no contract)."""

    name: str
    reason: str
    hint: str
    """What makes the config run it."""


@dataclass(frozen=True)
class Graph:
    """Every table and query of the project this deployment runs, in flow order, and the
    config it was built from: a command builds it once and hands it down."""

    config: Config
    nodes: tuple[Node, ...]
    queries: tuple[Query, ...]
    skipped: tuple[Skipped, ...] = ()
    """Defined tables left out, each with its reason (``warnings`` says them)."""

    def warnings(self) -> list[str]:
        """One line per reason a table is left out, naming the tables."""
        by_reason: dict[str, list[str]] = {}
        for s in self.skipped:
            by_reason.setdefault(s.reason, []).append(s.name)
        return [f"skipping {', '.join(names)}: {reason}" for reason, names in by_reason.items()]

    def node(self, name: str) -> Node:
        """The table ``layer.table`` (LH-DEF-003 naming the tables when unknown)."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise LakehouseError(ErrorCode.UNKNOWN_TABLE, f"no table {name!r}",
                             hint="tables: " + ", ".join(n.name for n in self.nodes))

    def query(self, name: str) -> Query:
        """The query ``layer.table`` (LH-DEF-003 naming the queries when unknown)."""
        for q in self.queries:
            if q.name == name:
                return q
        raise LakehouseError(ErrorCode.UNKNOWN_TABLE, f"no pipeline table {name!r}",
                             hint="definitions live in bronze/, silver/ and gold/: "
                                  + ", ".join(q.name for q in self.queries))

    def layer(self, layer: Layer) -> list[Query]:
        """The queries of one layer."""
        return [q for q in self.queries if q.layer == layer]

    def select(self, names: Sequence[str] | None) -> list[Query]:
        """The queries named, or all of them, in flow order. ``bronze.orders`` names one;
        a bare name (``orders``) names the table of that name in every layer."""
        if not names:
            return list(self.queries)
        chosen: set[str] = set()
        for n in names:
            matches = [q.name for q in self.queries if n in (q.name, q.name.split(".", 1)[1])]
            if not matches:
                self._not_run(n)
                self.query(n)  # raises, listing the queries
            chosen.update(matches)
        return [q for q in self.queries if q.name in chosen]

    def _not_run(self, name: str) -> None:
        """LH-DEF-004 if ``name`` is a table this deployment leaves out."""
        for s in self.skipped:
            if name in (s.name, s.name.split(".", 1)[1]):
                raise LakehouseError(
                    ErrorCode.TABLE_NOT_RUN, f"{s.name} is not run by this config: {s.reason}",
                    hint=s.hint, table=s.name)

    def outputs(self, query: str) -> list[Node]:
        """The tables query ``query`` writes, in its order (its own table first)."""
        return [self.node(n) for n in self.query(query).outputs]

    def downstream(self, name: str) -> list[Query]:
        """The queries reading table ``name``."""
        return [q for q in self.queries if q.input == name]

    def bronze(self, silver: str) -> Node:
        """The bronze table a silver table (or its quarantine) is built from."""
        return self.node(self.node(silver).inputs[0])


def build(config: Config) -> Graph:
    """The project's graph: definitions discovered, URIs and checkpoints from ``config``.

    Every source a contract declares gets a bronze and a silver table where no definition
    makes one (``registry.default_bronze``/``default_silver``). Tables whose source the
    config does not run (disabled, or declared by no contract) are left out with their
    reason (``Graph.skipped``), and so is everything downstream of them. Definitions naming
    a table that is not defined fail here, before anything starts."""
    wh = config.warehouse
    nodes: list[Node] = []
    queries: list[Query] = []

    def add(layer: Layer, definition: Definition, input_: str,
            tables: list[tuple[str, Role, tuple[str, ...]]]) -> None:
        name = f"{layer.value}.{definition.name}"
        for table, role, keys in tables:
            nodes.append(Node(f"{layer.value}.{table}", layer, role, wh.table_uri(layer, table),
                              (name,), (input_,), keys))
        queries.append(Query(name, layer, definition, input_, wh.checkpoint_uri(name),
                             tuple(f"{layer.value}.{t}" for t, _, _ in tables)))

    defined = discover_bronze()
    landed = {b.source for b in defined}
    bronze = sorted([*defined, *(default_bronze(s) for s in config.declared_sources
                                 if s not in landed)], key=lambda b: b.name)
    left_out: dict[str, tuple[str, str]] = {}
    """Table (``layer.name``) -> why it is not run, and what would run it."""
    for b in bronze:
        why = config.source_unavailable(b.source)
        if why is not None:
            left_out[f"bronze.{b.name}"] = (why, config.source_remedy(b.source))
            continue
        add(Layer.BRONZE, b, f"source:{b.source}",
            [(b.name, Role.TABLE, KAFKA_COORDINATES)])
    known = {b.name for b in bronze}
    defined_silver = discover_silver()
    read = {s.bronze for s in defined_silver}
    silver = sorted([*defined_silver, *(default_silver(b) for b in bronze
                                        if b.name not in read
                                        and b.source in config.declared_sources)],
                    key=lambda s: s.name)
    for s in silver:
        if s.bronze not in known:
            raise LakehouseError(ErrorCode.BAD_DEFINITION,
                                 f"silver.{s.name} reads bronze.{s.bronze}, which is not defined",
                                 hint="define it in bronze/ or fix the silver_table decorator")
        if f"bronze.{s.bronze}" in left_out:
            left_out[f"silver.{s.name}"] = left_out[f"bronze.{s.bronze}"]
            continue
        key = load_contract(Path(config.expectations_dir) / f"{s.contract}.contract.yaml").key
        add(Layer.SILVER, s, f"bronze.{s.bronze}",
            [(s.name, Role.TABLE, (key,)), (s.quarantine_name, Role.QUARANTINE, COORDINATES),
             ("_quality", Role.QUALITY, ()), ("_batches", Role.LEDGER, ())])
    silvers = {q.definition.name for q in queries if q.layer == Layer.SILVER}
    for g in discover_gold():
        if f"silver.{g.silver}" in left_out:
            left_out[f"gold.{g.name}"] = left_out[f"silver.{g.silver}"]
            continue
        if g.silver not in silvers:
            raise LakehouseError(ErrorCode.BAD_DEFINITION,
                                 f"gold.{g.name} reads silver.{g.silver}, which is not defined",
                                 hint="define it in silver/ or fix the gold_table decorator")
        # A two-stage table's state (gold._<name>_state) is known once its definition is
        # built on a SparkSession: lakehouse.layers.gold.GoldPlan.
        add(Layer.GOLD, g, f"silver.{g.silver}", [(g.name, Role.TABLE, ())])
    # silver._quality and silver._batches are shared by every silver query: one node each.
    unique: dict[str, Node] = {}
    for n in nodes:
        seen = unique.get(n.name)
        unique[n.name] = n if seen is None else replace(
            seen, queries=seen.queries + n.queries, inputs=seen.inputs + n.inputs)
    return Graph(config, tuple(unique.values()), tuple(queries),
                 tuple(Skipped(n, why, hint) for n, (why, hint) in left_out.items()))
