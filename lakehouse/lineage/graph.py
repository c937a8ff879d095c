"""The lineage graph of jobs and datasets, built from emitted OpenLineage events (pure),
drawn as a text tree, Graphviz DOT, or a self-contained HTML page with an SVG picture.

Two producers write the events: the Spark listener (every Spark action) and the project
(streaming queries and their micro-batches). Micro-batch runs are folded into their
query's job (through their ``parent`` facet), and so are the listener's runs inside an
application that runs streaming queries (a micro-batch's writes and MERGEs), so the
graph has one node per streaming query: Kafka topic -> bronze job -> bronze table ->
silver job -> silver tables -> gold jobs -> gold tables. The listener's runs elsewhere
(a replay, a restore, an analyst's Spark SQL) are jobs of their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader

from lakehouse.batch import DatasetName
from lakehouse.lineage.events import BATCH_SUFFIX, PRODUCER


@dataclass
class JobNode:
    """A streaming query, with what its runs did."""

    namespace: str
    name: str
    runs: int = 0
    """Query runs started."""
    state: str = ""
    """The latest query run's last state (START = running or killed)."""
    batches: int = 0
    failed_batches: int = 0
    last_event: str = ""


@dataclass
class DatasetNode:
    """A dataset, with the newest version a batch reported writing (or reading)."""

    id: DatasetName
    version: int | None = None
    label: str = ""


@dataclass
class Graph:
    """Jobs, datasets and the edges dataset -> job (read) and job -> dataset (write)."""

    jobs: dict[str, JobNode] = field(default_factory=dict)
    datasets: dict[DatasetName, DatasetNode] = field(default_factory=dict)
    reads: set[tuple[DatasetName, str]] = field(default_factory=set)
    writes: set[tuple[str, DatasetName]] = field(default_factory=set)

    def readers(self, dataset: DatasetName) -> list[str]:
        """Jobs that read ``dataset``, by name."""
        return sorted(j for d, j in self.reads if d == dataset)

    def outputs(self, job: str) -> list[DatasetName]:
        """Datasets ``job`` writes."""
        return sorted(d for j, d in self.writes if j == job)

    def sources(self) -> list[DatasetName]:
        """Datasets no job writes (the Kafka topics)."""
        written = {d for _, d in self.writes}
        return sorted(d for d in self.datasets if d not in written)


def read_events(*paths: str | Path) -> list[dict[str, Any]]:
    """The events of JSON-lines files that exist, in time order (a torn last line, from a
    killed job, is skipped)."""
    out = []
    for path in paths:
        if not Path(path).is_file():
            continue
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    out.sort(key=lambda e: str(e.get("eventTime", "")))
    return out


def _parent_run(event: Mapping[str, Any]) -> str | None:
    parent = (event.get("run", {}).get("facets") or {}).get("parent")
    return str(parent["run"]["runId"]) if parent else None


def build(events: Iterable[Mapping[str, Any]], labels: Mapping[str, str] | None = None
          ) -> Graph:
    """The graph the events describe. ``labels``: storage path -> table name to show."""
    labels = labels or {}
    g = Graph()
    events = list(events)
    # Applications that run streaming queries: the listener's runs inside them are the
    # micro-batches' own actions, which the query jobs stand for.
    hosts = {p for e in events if e.get("producer") == PRODUCER
             and not str(e["job"]["name"]).endswith(BATCH_SUFFIX) and (p := _parent_run(e))}
    for e in events:
        if e.get("producer") != PRODUCER and (
                _parent_run(e) in hosts or not (e.get("inputs") or e.get("outputs"))):
            continue
        job_name = str(e["job"]["name"])
        parent = (e.get("run", {}).get("facets") or {}).get("parent")
        is_batch = parent is not None and job_name.endswith(BATCH_SUFFIX)
        name = str(parent["job"]["name"]) if is_batch and parent else job_name
        job = g.jobs.setdefault(name, JobNode(str(e["job"]["namespace"]), name))
        job.last_event = max(job.last_event, str(e.get("eventTime", "")))
        state = str(e.get("eventType", ""))
        if is_batch:
            job.batches += state == "COMPLETE"
            job.failed_batches += state == "FAIL"
        else:
            job.runs += state == "START"
            job.state = state
        for kind, datasets in (("in", e.get("inputs") or []), ("out", e.get("outputs") or [])):
            for d in datasets:
                ident = DatasetName(str(d["namespace"]), str(d["name"]))
                node = g.datasets.setdefault(ident, DatasetNode(ident, None,
                                                                labels.get(ident.name, "")))
                version = ((d.get("facets") or {}).get("version") or {}).get("datasetVersion")
                if version is not None and version.isdigit():
                    node.version = max(node.version or 0, int(version))
                if kind == "in":
                    g.reads.add((ident, name))
                else:
                    g.writes.add((name, ident))
    return g


def _dataset_label(node: DatasetNode) -> str:
    name = node.label or str(node.id)
    if not node.label and node.id.namespace.startswith("kafka://"):
        name = f"topic {node.id.name} ({node.id.namespace})"
    return name + (f"  v{node.version}" if node.version is not None else "")


def _job_label(job: JobNode) -> str:
    state = {"START": "running or stopped without a final event", "COMPLETE": "completed",
             "FAIL": "FAILED"}.get(job.state, job.state or "no query event")
    failed = f", {job.failed_batches} failed" if job.failed_batches else ""
    return (f"job {job.name}  ({job.runs} run{'s' if job.runs != 1 else ''}, last {state}; "
            f"{job.batches} batches{failed})")


def text_tree(g: Graph) -> str:
    """An indented tree from each source dataset down to the gold tables."""
    lines: list[str] = []
    shown: set[str] = set()

    def dataset(d: DatasetName, prefix: str, last: bool, top: bool) -> None:
        node = g.datasets[d]
        lines.append(("" if top else prefix + ("└── " if last else "├── ")) + _dataset_label(node))
        below = prefix if top else prefix + ("    " if last else "│   ")
        readers = g.readers(d)
        for i, j in enumerate(readers):
            job(j, below, i == len(readers) - 1)

    def job(name: str, prefix: str, last: bool) -> None:
        lines.append(prefix + ("└── " if last else "├── ") + _job_label(g.jobs[name]))
        below = prefix + ("    " if last else "│   ")
        if name in shown:
            lines.append(below + "└── (outputs shown above)")
            return
        shown.add(name)
        outs = g.outputs(name)
        for i, d in enumerate(outs):
            dataset(d, below, i == len(outs) - 1, False)

    for source in g.sources():
        dataset(source, "", True, True)
    return "\n".join(lines)


def _id(prefix: str, key: str) -> str:
    return prefix + "".join(c if c.isalnum() else "_" for c in key)


def dot(g: Graph) -> str:
    """Graphviz DOT (``dot -Tsvg``): jobs as boxes, datasets as cylinders."""
    out = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];']
    for d, node in sorted(g.datasets.items()):
        out.append(f'  {_id("d_", str(d))} [shape=cylinder, label={_q(_dataset_label(node))}, '
                   f'tooltip={_q(str(d))}];')
    for name, job in sorted(g.jobs.items()):
        color = ', color="red"' if job.state == "FAIL" or job.failed_batches else ""
        out.append(f'  {_id("j_", name)} [shape=box, style=rounded, '
                   f'label={_q(name + chr(10) + f"{job.batches} batches")}{color}];')
    for d, j in sorted(g.reads):
        out.append(f'  {_id("d_", str(d))} -> {_id("j_", j)};')
    for j, d in sorted(g.writes):
        out.append(f'  {_id("j_", j)} -> {_id("d_", str(d))};')
    out.append("}")
    return "\n".join(out) + "\n"


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _edges(g: Graph) -> list[tuple[str, str]]:
    return [(f"d:{d}", f"j:{j}") for d, j in g.reads] + [(f"j:{j}", f"d:{d}") for j, d in g.writes]


def _layers(g: Graph) -> dict[str, int]:
    """Column of every node (longest path from a source); keys ``d:<id>`` / ``j:<name>``."""
    depth = dict.fromkeys([f"d:{d}" for d in g.datasets] + [f"j:{j}" for j in g.jobs], 0)
    edges = _edges(g)
    for _ in range(len(depth)):
        changed = False
        for a, b in edges:
            if depth[b] < depth[a] + 1:
                depth[b] = depth[a] + 1
                changed = True
        if not changed:
            break
    return depth


PAGE = Environment(loader=PackageLoader("lakehouse.lineage"), autoescape=True,
                   keep_trailing_newline=True).get_template("lineage.html.j2")


def html_page(g: Graph, title: str = "Lineage") -> str:
    """A self-contained HTML page: the graph as an inline SVG, columns left to right."""
    depth = _layers(g)
    columns: dict[int, list[str]] = {}
    for node in sorted(depth, key=lambda n: (depth[n], n)):
        columns.setdefault(depth[node], []).append(node)
    width, height, gap_x, gap_y = 220, 46, 70, 22
    pos = {n: (20 + c * (width + gap_x), 20 + r * (height + gap_y))
           for c, ns in columns.items() for r, n in enumerate(ns)}
    edges = []
    for a, b in sorted(_edges(g)):
        (ax, ay), (bx, by) = pos[a], pos[b]
        x1, y1, x2, y2 = ax + width, ay + height // 2, bx, by + height // 2
        edges.append((x1, y1, (x1 + x2) // 2, x2, y2))
    nodes = []
    for n, (x, y) in sorted(pos.items()):
        kind, key = n.split(":", 1)
        if kind == "j":
            job = g.jobs[key]
            failed = job.state == "FAIL" or job.failed_batches > 0
            label, sub, tip = key, f"{job.batches} batches · {job.state.lower()}", _job_label(job)
            css = "job failed" if failed else "job"
        else:
            data = next(v for k, v in g.datasets.items() if str(k) == key)
            label = data.label or data.id.name.rsplit("/", 1)[-1]
            sub = f"version {data.version}" if data.version is not None else data.id.namespace
            tip, css = str(data.id), "dataset"
        nodes.append({"x": x, "y": y, "css": css, "tip": tip, "label": label, "sub": sub})
    return PAGE.render(
        title=title, edges=edges, nodes=nodes, width=width, height=height, tree=text_tree(g),
        svg_w=40 + len(columns) * (width + gap_x),
        svg_h=40 + max((len(ns) for ns in columns.values()), default=1) * (height + gap_y))
