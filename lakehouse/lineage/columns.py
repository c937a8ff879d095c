"""Column-level lineage read off a Spark logical plan, never written down by hand.

``plan_nodes(df)`` asks Spark for the analyzed plan as JSON (one JVM call); the rest is
pure: ``trace`` walks the plan bottom-up, following every attribute by its expression id
from the leaf relation's columns to the plan's output columns, and classifies each hop
the way OpenLineage does:

- DIRECT: IDENTITY (the column as it is), TRANSFORMATION (computed from it),
  AGGREGATION (an aggregate function over it);
- INDIRECT (the whole output depends on it): FILTER, GROUP_BY, JOIN, SORT, WINDOW.

The project's queries read exactly one dataset, whose columns are the plan's leaf
attributes; every output column maps to the leaf columns it derives from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Node = dict[str, Any]

IDENTITY, TRANSFORMATION, AGGREGATION = "IDENTITY", "TRANSFORMATION", "AGGREGATION"
_RANK = {IDENTITY: 0, TRANSFORMATION: 1, AGGREGATION: 2}
_EXPR = "org.apache.spark.sql.catalyst.expressions."
_ATTRIBUTE = _EXPR + "AttributeReference"
_ALIAS = _EXPR + "Alias"
_AGGREGATE_FN = _EXPR + "aggregate.AggregateExpression"
# Plan fields whose expressions make the whole output depend on their columns.
_INDIRECT = {"Filter": ("condition", "FILTER"), "Join": ("condition", "JOIN"),
             "Sort": ("order", "SORT"), "Aggregate": ("groupingExpressions", "GROUP_BY"),
             "Window": ("partitionSpec", "WINDOW")}

Sources = dict[str, str]
"""Leaf column -> the strongest DIRECT subtype along the way."""


@dataclass(frozen=True)
class ColumnLineage:
    """Which leaf columns each output column derives from, and how."""

    fields: Mapping[str, Sources]
    """Output column -> {input column: IDENTITY | TRANSFORMATION | AGGREGATION}."""
    indirect: Mapping[str, frozenset[str]]
    """Input column -> the INDIRECT subtypes through which every output depends on it."""

    def restricted_to(self, inputs: set[str]) -> ColumnLineage:
        """Only the input columns that are columns of the input dataset (drops e.g. the
        reader's own metadata columns such as the commit version)."""
        return ColumnLineage(
            {out: {c: s for c, s in src.items() if c in inputs} for out, src in self.fields.items()},
            {c: s for c, s in self.indirect.items() if c in inputs})


def plan_nodes(df: Any) -> list[Node]:
    """The analyzed logical plan of a DataFrame as Spark's JSON tree (pre-order list)."""
    import json
    return json.loads(df._jdf.queryExecution().analyzed().toJSON())  # type: ignore[no-any-return]


def trace(nodes: list[Node]) -> ColumnLineage:
    """Column lineage of the plan whose pre-order JSON nodes are ``nodes``."""
    lineage: dict[int, Sources] = {}
    indirect: dict[str, set[str]] = {}
    output, _ = _walk(nodes, 0, lineage, indirect)
    fields = {name: dict(lineage.get(expr_id, {})) for name, expr_id in output}
    return ColumnLineage(fields, {c: frozenset(s) for c, s in indirect.items()})


Output = list[tuple[str, int]]


def _walk(nodes: list[Node], i: int, lineage: dict[int, Sources],
          indirect: dict[str, set[str]]) -> tuple[Output, int]:
    """Fill ``lineage`` (expression id -> leaf sources) for the plan rooted at ``nodes[i]``
    (Spark's pre-order list, ``num-children`` per node), children first; its output
    columns, and the index after it."""
    node, outputs = nodes[i], []
    i += 1
    for _ in range(int(node.get("num-children", 0))):
        output, i = _walk(nodes, i, lineage, indirect)
        outputs.append(output)
    return _output(node, outputs, lineage, indirect), i


def _output(node: Node, outputs: list[Output], lineage: dict[int, Sources],
            indirect: dict[str, set[str]]) -> Output:
    """The output columns of ``node`` whose children give ``outputs``; fills ``lineage``."""
    kind = str(node["class"]).rsplit(".", 1)[-1]
    if not outputs:
        out = [_attribute(expr[0]) for expr in node.get("output") or []]
        for name, expr_id in out:
            lineage[expr_id] = {name: IDENTITY}
        return out
    for expr in _expressions(node):
        _define_aliases(expr, lineage)
    if kind in _INDIRECT:
        field, subtype = _INDIRECT[kind]
        for expr in _expression_lists(node.get(field)):
            for ref in _references(expr):
                for column in lineage.get(ref, {}):
                    indirect.setdefault(column, set()).add(subtype)
    if kind == "Union":
        for other in outputs[1:]:
            for (_, first_id), (_, other_id) in zip(outputs[0], other, strict=False):
                _merge(lineage.setdefault(first_id, {}), lineage.get(other_id, {}))
        return outputs[0]
    if kind == "Generate":
        generated = [_attribute(e[0]) for e in node.get("generatorOutput") or []]
        sources: Sources = {}
        for expr in _expressions(node):
            for ref in _references(expr):
                _merge(sources, _stronger(lineage.get(ref, {}), TRANSFORMATION))
        for _, expr_id in generated:
            lineage[expr_id] = dict(sources)
        return [*outputs[0], *generated]
    for field in ("projectList", "aggregateExpressions"):
        if field in node:
            return [_attribute(expr[0]) for expr in node[field]]
    if kind == "Join":
        return [*outputs[0], *(outputs[1] if len(outputs) > 1 else [])]
    if kind == "Window":
        return [*outputs[0], *(_attribute(e[0]) for e in node.get("windowExpressions") or [])]
    if "output" in node:
        return [_attribute(expr[0]) for expr in node["output"]]
    return outputs[0]


def _define_aliases(expr: list[Node], lineage: dict[int, Sources]) -> None:
    """Give every alias in ``expr`` the sources of the attributes under it."""
    for start, node in enumerate(expr):
        if node["class"] != _ALIAS:
            continue
        body = list(_subtree(expr, start + 1))
        direct_attribute = len(body) == 1 and body[0]["class"] == _ATTRIBUTE
        aggregated = any(n["class"] == _AGGREGATE_FN for n in body)
        hop = IDENTITY if direct_attribute else AGGREGATION if aggregated else TRANSFORMATION
        sources: Sources = {}
        for n in body:
            if n["class"] == _ATTRIBUTE:
                _merge(sources, _stronger(lineage.get(_expr_id(n), {}), hop))
        lineage[_expr_id(node)] = sources


def _subtree(expr: list[Node], start: int) -> Iterator[Node]:
    """The nodes of the expression subtree rooted at ``expr[start]``."""
    pending = 1
    i = start
    while pending and i < len(expr):
        pending += int(expr[i].get("num-children", 0)) - 1
        yield expr[i]
        i += 1


def _expressions(node: Node) -> Iterator[list[Node]]:
    """Every expression of a plan node (lists of pre-order expression nodes)."""
    for value in node.values():
        yield from _expression_lists(value)


def _expression_lists(value: Any) -> Iterator[list[Node]]:
    if isinstance(value, list) and value:
        if isinstance(value[0], dict) and "class" in value[0] and \
                str(value[0]["class"]).startswith(_EXPR):
            yield value
        else:
            for item in value:
                yield from _expression_lists(item)


def _references(expr: list[Node]) -> Iterator[int]:
    for n in expr:
        if n["class"] == _ATTRIBUTE:
            yield _expr_id(n)


def _attribute(node: Node) -> tuple[str, int]:
    return str(node["name"]), _expr_id(node)


def _expr_id(node: Node) -> int:
    return int(node["exprId"]["id"])


def _stronger(sources: Sources, hop: str) -> Sources:
    return {c: max(s, hop, key=_RANK.__getitem__) for c, s in sources.items()}


def _merge(into: Sources, more: Sources) -> None:
    for column, subtype in more.items():
        into[column] = max(into.get(column, subtype), subtype, key=_RANK.__getitem__)

