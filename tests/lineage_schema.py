"""Validate OpenLineage events against the spec as the client ships it.

``openlineage-python`` 1.54 ships the OpenLineage JSON schema (OpenLineage.json and every
facet's schema) compiled into its generated ``attrs`` classes, not as ``.json`` files
(neither the wheel nor the sdist contains them). This module turns those classes back
into JSON Schema, with ``jsonschema`` doing the validation: the run event itself, then
every facet against the class its ``_schemaURL`` names (the project's own facets
against theirs, in ``lakehouse.lineage.events``).
"""

from __future__ import annotations

import enum
import importlib
import inspect
import pkgutil
import types
import typing
import uuid
from datetime import datetime
from typing import Any

import attr
import jsonschema
from openlineage.client import generated
from openlineage.client.generated.base import BaseFacet, RunEvent

from lakehouse.lineage import events as project_facets


def schema_of(root: Any) -> dict[str, Any]:
    """JSON Schema of a generated class (classes it uses go to ``$defs``)."""
    defs: dict[str, Any] = {}
    return {**_schema(root, defs), "$defs": defs}


def _schema(tp: Any, seen: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if tp is Any:
        return {}
    if tp is type(None):
        return {"type": "null"}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema(a, seen) for a in typing.get_args(tp)]}
    if origin is list:
        (item,) = typing.get_args(tp)
        return {"type": "array", "items": _schema(item, seen)}
    if origin is dict:
        _, value = typing.get_args(tp)
        if inspect.isclass(value) and issubclass(value, BaseFacet):
            # Facets are checked one by one against the class their _schemaURL names.
            return {"type": "object", "additionalProperties": _FACET}
        return {"type": "object", "additionalProperties": _schema(value, seen)}
    if inspect.isclass(tp) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if inspect.isclass(tp) and attr.has(tp):
        name = f"{tp.__module__}.{tp.__qualname__}".replace(".", "_")
        if name not in seen:
            out: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
            seen[name] = out
            hints = typing.get_type_hints(tp)
            for f in attr.fields(tp):
                out["properties"][f.name] = _schema(hints[f.name], seen)
                if f.default is attr.NOTHING and f.init:
                    out["required"].append(f.name)
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON schema for {tp!r}")


_FACET = {"type": "object", "required": ["_producer", "_schemaURL"],
          "properties": {"_producer": {"type": "string", "format": "uri"},
                         "_schemaURL": {"type": "string", "format": "uri"}}}


def facet_classes() -> dict[str, type]:
    """``_schemaURL`` -> facet class, for every facet the client and the project define."""
    out: dict[str, type] = {}
    modules = [importlib.import_module(f"{generated.__name__}.{m.name}")
               for m in pkgutil.iter_modules(generated.__path__)] + [project_facets]
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseFacet) and attr.has(cls) and cls.__module__ == module.__name__:
                out[cls._get_schema()] = cls
    return out


EVENT_SCHEMA = schema_of(RunEvent)
FACETS = facet_classes()


def validate(event: dict[str, Any]) -> None:
    """Raise if ``event`` (parsed JSON) breaks the spec: the event, then every facet."""
    jsonschema.validate(event, EVENT_SCHEMA)
    uuid.UUID(event["run"]["runId"])
    assert "T" in event["eventTime"]
    datetime.fromisoformat(event["eventTime"])
    holders = [event["run"], event["job"], *event.get("inputs", []), *event.get("outputs", [])]
    for holder in holders:
        for key in ("facets", "inputFacets", "outputFacets"):
            for name, facet in (holder.get(key) or {}).items():
                url = facet["_schemaURL"]
                assert url in FACETS, f"facet {name}: unknown schema {url}"
                jsonschema.validate(facet, schema_of(FACETS[url]))
