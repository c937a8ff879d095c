"""Table definitions: plain functions marked with a thin decorator, found by discovery.

A bronze table is a function ``raw Kafka DataFrame -> DataFrame`` in a module of the
``bronze`` package; its name defaults to the function name and it reads the source of
the same name from config. Importing a definition module has no side effects: the
decorator only attaches a frozen spec to the function, and ``discover`` collects them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame

from lakehouse.errors import ErrorCode, LakehouseError

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

    def mark(fn: Transform) -> Transform:
        table = name or fn.__name__
        spec = BronzeTable(name=table, source=source or table, transform=fn,
                           partition_by=tuple(partition_by),
                           description=(fn.__doc__ or "").strip().splitlines()[0]
                           if fn.__doc__ else "")
        setattr(fn, _SPEC_ATTR, spec)
        return fn

    return mark


def discover_bronze(package: str = "bronze") -> list[BronzeTable]:
    """Every bronze table defined in the modules of ``package``, sorted by name."""
    found: dict[str, BronzeTable] = {}
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        for value in vars(module).values():
            spec = getattr(value, _SPEC_ATTR, None)
            if not isinstance(spec, BronzeTable) or value is not spec.transform:
                continue
            if spec.name in found and found[spec.name].transform is not spec.transform:
                raise LakehouseError(ErrorCode.BAD_DEFINITION,
                                     f"bronze table {spec.name!r} is defined twice "
                                     f"(second time in {module.__name__})")
            found[spec.name] = spec
    return [found[k] for k in sorted(found)]
