"""Table definitions: plain functions marked with a thin decorator, found by discovery.

A bronze table is a function ``raw Kafka DataFrame -> DataFrame`` in a module of the
``bronze`` package; its name defaults to the function name and it reads the source of
the same name from config. A silver table is a function ``parsed DataFrame -> DataFrame``
in the ``silver`` package, reading one bronze table through the contract and suite of
the same name (``expectations/<name>.contract.yaml`` and ``.suite.json``). A gold table
is a function in the ``gold`` package returning the ``Aggregate`` it keeps. Importing a
definition module has no side effects: the decorator only attaches a frozen spec to the
function, and ``discover_*`` collects them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from pyspark.sql import DataFrame

from lakehouse.errors import ErrorCode, LakehouseError

if TYPE_CHECKING:
    from lakehouse.aggregates import Aggregate

Transform = Callable[[DataFrame], DataFrame]
_SPEC_ATTR = "__lakehouse_table__"


@dataclass(frozen=True)
class BronzeTable:
    """A bronze table: where its records come from and how they land."""

    name: str
    source: str
    transform: Transform
    partition_by: tuple[str, ...]
    description: str

    @property
    def qualified_name(self) -> str:
        """``bronze.<name>``, as queries and logs call it."""
        return f"bronze.{self.name}"


def bronze_table(*, source: str | None = None, name: str | None = None,
                 partition_by: Sequence[str] = ("ingest_date",)) -> Callable[[Transform], Transform]:
    """Declare a bronze table. ``source`` defaults to the table name."""
    return _marking(lambda fn: BronzeTable(
        name or fn.__name__, source or name or fn.__name__, fn, tuple(partition_by),
        _first_line(fn.__doc__)))


@dataclass(frozen=True)
class SilverTable:
    """A silver table: which bronze table it reads and which contract it enforces."""

    name: str
    bronze: str
    contract: str
    transform: Transform
    description: str

    @property
    def qualified_name(self) -> str:
        """``silver.<name>``."""
        return f"silver.{self.name}"

    @property
    def quarantine_name(self) -> str:
        """The table its rejected records go to."""
        return f"{self.name}_quarantine"


def silver_table(*, bronze: str | None = None, contract: str | None = None,
                 name: str | None = None) -> Callable[[Transform], Transform]:
    """Declare a silver table. ``bronze`` and ``contract`` default to the table name.

    The function receives the bronze rows parsed against the contract (typed contract
    fields, ``extras``) and may add derived columns; the suite then validates them.
    """
    return _marking(lambda fn: SilverTable(
        name or fn.__name__, bronze or name or fn.__name__, contract or name or fn.__name__,
        fn, _first_line(fn.__doc__)))


@dataclass(frozen=True)
class GoldTable:
    """A gold table: the silver table it aggregates and how (an ``Aggregate``)."""

    name: str
    silver: str
    definition: Callable[[], Aggregate]
    description: str

    @property
    def qualified_name(self) -> str:
        """``gold.<name>``."""
        return f"gold.{self.name}"

    @property
    def state_name(self) -> str:
        """The internal table holding a two-stage aggregate's state rows."""
        return f"_{self.name}_state"

    def build(self) -> Aggregate:
        """The definition (Spark column expressions need a running session)."""
        return self.definition()


def gold_table(*, silver: str, name: str | None = None
               ) -> Callable[[Callable[[], Aggregate]], Callable[[], Aggregate]]:
    """Declare a gold table: a function returning the ``Aggregate`` of ``silver.<silver>``
    rows the table holds. Its first docstring line describes the table."""
    return _marking(lambda fn: GoldTable(name or fn.__name__, silver, fn, _first_line(fn.__doc__)))


Fn = TypeVar("Fn", bound=Callable[..., object])


def _marking(spec: Callable[[Fn], object]) -> Callable[[Fn], Fn]:
    """A decorator attaching ``spec(fn)`` to the function it marks (and returning it)."""
    def mark(fn: Fn) -> Fn:
        setattr(fn, _SPEC_ATTR, spec(fn))
        return fn

    return mark


def default_bronze(source: str) -> BronzeTable:
    """The bronze table of a source no definition in ``bronze/`` lands: ``bronze.<source>``,
    its records as they arrived (``lakehouse.landing.land``)."""
    from lakehouse.landing import land
    return BronzeTable(source, source, land, ("ingest_date",),
                       f"{source} events exactly as they arrived")


def default_silver(bronze: BronzeTable) -> SilverTable:
    """The silver table of a bronze table no definition in ``silver/`` reads: the same
    name, its source's contract and suite, no derived columns."""
    return SilverTable(bronze.name, bronze.name, bronze.source, _as_parsed,
                       f"{bronze.source} events that passed their contract and suite, once "
                       "per key")


def _as_parsed(events: DataFrame) -> DataFrame:
    return events


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


Spec = TypeVar("Spec", BronzeTable, SilverTable, GoldTable)


def _discover(package: str, kind: type[Spec]) -> list[Spec]:
    found: dict[str, Spec] = {}
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        for value in vars(module).values():
            spec = getattr(value, _SPEC_ATTR, None)
            if not isinstance(spec, kind) or value is not _function(spec):
                continue
            if spec.name in found and _function(found[spec.name]) is not _function(spec):
                raise LakehouseError(ErrorCode.BAD_DEFINITION,
                                     f"{package} table {spec.name!r} is defined twice "
                                     f"(second time in {module.__name__})")
            found[spec.name] = spec
    return [found[k] for k in sorted(found)]


def _function(spec: BronzeTable | SilverTable | GoldTable) -> Callable[..., object]:
    return spec.definition if isinstance(spec, GoldTable) else spec.transform


def discover_bronze(package: str = "bronze") -> list[BronzeTable]:
    """Every bronze table defined in the modules of ``package``, sorted by name."""
    return _discover(package, BronzeTable)


def discover_silver(package: str = "silver") -> list[SilverTable]:
    """Every silver table defined in the modules of ``package``, sorted by name."""
    return _discover(package, SilverTable)


def discover_gold(package: str = "gold") -> list[GoldTable]:
    """Every gold table defined in the modules of ``package``, sorted by name."""
    return _discover(package, GoldTable)


def bronze_source(bronze: str, package: str = "bronze") -> str:
    """The source a bronze table reads (its own name when no definition says otherwise)."""
    return next((b.source for b in discover_bronze(package) if b.name == bronze), bronze)
