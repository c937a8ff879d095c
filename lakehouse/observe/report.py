"""``lakehouse report``: one self-contained HTML page of how the pipelines ran.

From the event log and silver's quality and quarantine tables over a window: the SLOs and
the status screen, then plots of throughput, Kafka lag, freshness, pass rate per rule,
quarantine reasons, duplicate rate and time per batch phase. Plots are matplotlib SVG
inlined in the page (no script, no network: it opens anywhere and can be archived with
the audit). ``report.html#plot-<name>`` shows one plot alone.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
from jinja2 import Environment, PackageLoader

from lakehouse import graph
from lakehouse.config import Config
from lakehouse.io.delta_log import open_table
from lakehouse.observe.figures import (
    SloResult,
    describe_slos,
    read_events,
    slo_results,
    sql_over,
    status_lines,
    window_start,
)
from lakehouse.registry import SilverTable

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#bcbd22", "#e377c2",
           "#17becf")
"""Series colours (the report's plots draw their data in these, and only data)."""


@dataclass(frozen=True)
class Plot:
    """One figure of the report."""

    name: str
    title: str
    caption: str
    points: int
    """Data points drawn (0: the plot says there was no data)."""
    svg: str


@dataclass(frozen=True)
class ReportData:
    """What the report shows, read from the warehouse."""

    events: pa.Table
    rules: list[tuple[str, str, int, int]]
    """(table, rule, records checked, records that failed) over the window."""
    reasons: list[tuple[str, str, int]]
    """(table, rule, quarantined records) over the window."""
    slos: Sequence[SloResult]
    status: Sequence[str]
    slo_window_minutes: float
    freshness_objective_s: float


def read_quality(pipeline: graph.Graph, since: datetime) -> tuple[list[tuple[str, str, int, int]],
                                                          list[tuple[str, str, int]]]:
    """Per silver table and rule: records checked and failed (``silver._quality``), and
    records quarantined for it, since ``since``."""
    opts = pipeline.config.warehouse.storage_options
    rules: list[tuple[str, str, int, int]] = []
    reasons: list[tuple[str, str, int]] = []
    quality = open_table(pipeline.node("silver._quality").uri, opts)
    with sql_over() as con:
        if quality is not None:
            con.register("quality", quality.to_pyarrow_dataset())
            rules = [(str(t), str(r), int(n), int(u)) for t, r, n, u in con.execute(
                """SELECT "table", rule, sum(element_count), sum(unexpected_count)
                   FROM quality WHERE validated_at >= $since
                   GROUP BY ALL ORDER BY 1, 2""", {"since": since}).fetchall()]
        for q in pipeline.layer(graph.Layer.SILVER):
            assert isinstance(q.definition, SilverTable)
            table = open_table(pipeline.node(f"silver.{q.definition.quarantine_name}").uri, opts)
            if table is None:
                continue
            con.register("quarantine", table.to_pyarrow_dataset())
            reasons += [(q.name, str(r), int(n)) for r, n in con.execute(
                """SELECT rule, count(*) FROM (SELECT unnest(failed_rules) AS rule
                   FROM quarantine WHERE quarantined_at >= $since) GROUP BY 1
                   ORDER BY 2 DESC, 1""", {"since": since}).fetchall()]
    return rules, reasons


def read_report(pipeline: graph.Graph, now: datetime) -> ReportData:
    """Everything the report shows, over the SLO window that ends ``now``."""
    config = pipeline.config
    since = window_start(config.slo, now)
    rules, reasons = read_quality(pipeline, since)
    return ReportData(read_events(config, since), rules, reasons, slo_results(pipeline, now),
                      status_lines(pipeline, now), config.slo.window_minutes,
                      config.slo.freshness_p95_seconds)


# -- the plots -----------------------------------------------------------------------------

def _figure(height: float = 3.2) -> tuple[Any, Any]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from cycler import cycler
    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False,
                         "axes.prop_cycle": cycler(color=list(PALETTE))})
    return plt.subplots(figsize=(9, height), dpi=100)


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    out = io.StringIO()
    fig.savefig(out, format="svg")
    plt.close(fig)
    text = out.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)
    return text[text.index("<svg"):]


def _series(events: pa.Table, layer: str | None, value: str, where: str = "TRUE"
            ) -> dict[str, tuple[list[Any], list[float]]]:
    """Per pipeline (of ``layer``): (times, values) of the SQL expression ``value``."""
    with sql_over(events=events) as con:
        rows = con.execute(
            f"""SELECT pipeline, ended_at, {value} AS v FROM events
                WHERE {"layer = $layer" if layer else "TRUE"} AND ({where}) AND {value} IS NOT NULL
                ORDER BY pipeline, ended_at""", {"layer": layer} if layer else {}).fetchall()
    out: dict[str, tuple[list[Any], list[float]]] = {}
    for pipeline, at, v in rows:
        times, values = out.setdefault(pipeline, ([], []))
        times.append(at)
        values.append(float(v))
    return out


def _lines(name: str, title: str, caption: str, ylabel: str,
           series: dict[str, tuple[list[Any], list[float]]], threshold: float | None = None
           ) -> Plot:
    points = sum(len(v) for _, v in series.values())
    if not points:
        return Plot(name, title, caption, 0, "")
    import matplotlib.dates as mdates
    fig, ax = _figure()
    for label, (times, values) in sorted(series.items()):
        # Above the axes' spines: a series at zero (no lag) is drawn, not hidden by the axis.
        ax.plot(times, values, marker="." if len(values) < 60 else None, linewidth=1.6,
                label=label, zorder=3, clip_on=False)
    top = max(max(v) for _, v in series.values())
    if threshold is not None:
        ax.axhline(threshold, color="#555555", linestyle="--", linewidth=1,
                   label=f"objective {threshold:g}")
        top = max(top, threshold)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, top * 1.08 if top > 0 else 1)
    locator = mdates.AutoDateLocator(tz="UTC")
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz="UTC"))
    ax.set_xlabel("time (UTC)")
    ax.grid(axis="y", color="#e6e6e6")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return Plot(name, title, caption, points, _svg(fig))


def _bars(name: str, title: str, caption: str, xlabel: str,
          bars: list[tuple[str, float]], label: str = "{:,.0f}") -> Plot:
    """Horizontal bars, each labelled with its value (``label``: its format)."""
    if not bars:
        return Plot(name, title, caption, 0, "")
    fig, ax = _figure(max(1.6, 0.32 * len(bars) + 0.9))
    drawn = ax.barh(range(len(bars)), [b[1] for b in bars], color=PALETTE[0], height=0.6)
    ax.bar_label(drawn, labels=[label.format(b[1]) for b in bars], padding=3, fontsize=8)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars])
    ax.invert_yaxis()
    ax.set_xlim(0, max(b[1] for b in bars) * 1.15 or 1)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", color="#e6e6e6")
    return Plot(name, title, caption, len(bars), _svg(fig))


def _phases(events: pa.Table) -> Plot:
    with sql_over(events=events) as con:
        rows = con.execute(
            """SELECT pipeline, key, avg(value) FROM (
                   SELECT pipeline, unnest(map_keys(duration_ms)) AS key,
                          unnest(map_values(duration_ms)) AS value FROM events)
               WHERE key NOT IN ('triggerExecution', 'batch') GROUP BY ALL
               ORDER BY 1, 2""").fetchall()
    title, caption = "Time per batch phase", ("Mean milliseconds per micro-batch in each "
                                              "phase Spark reports (addBatch is the "
                                              "project's writer).")
    if not rows:
        return Plot("phases", title, caption, 0, "")
    pipelines = sorted({r[0] for r in rows})
    phases = sorted({r[1] for r in rows})
    mean = {(r[0], r[1]): float(r[2]) for r in rows}
    fig, ax = _figure(max(1.8, 0.34 * len(pipelines) + 1.2))
    left = [0.0] * len(pipelines)
    for n, phase in enumerate(phases):
        widths = [mean.get((p, phase), 0.0) for p in pipelines]
        ax.barh(range(len(pipelines)), widths, left=left, height=0.6, label=phase,
                color=PALETTE[n % len(PALETTE)])
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(range(len(pipelines)), pipelines)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds (mean per batch)")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return Plot("phases", title, caption, len(rows), _svg(fig))


def plots(data: ReportData) -> list[Plot]:
    """Every plot of the report (pure: matplotlib draws in memory)."""
    e = data.events
    return [
        _lines("throughput", "Throughput", "Records each micro-batch read, per second of "
               "its duration, by pipeline.", "records / s",
               _series(e, None, "input_rows * 1000.0 / greatest(coalesce(duration_ms['"
                       "triggerExecution'], duration_ms['batch']), 1)",
                       "input_rows > 0")),
        _lines("lag", "Kafka lag", "Records the topic held past each bronze batch's end "
               "(latest offset minus processed).", "records",
               _series(e, None, "kafka_lag")),
        _lines("freshness", "Freshness", "p95 latency from an event's Kafka timestamp to its "
               "gold commit, per gold batch; the dashed line is the objective.", "seconds",
               _series(e, "gold", "latency_p95_ms / 1000.0"), data.freshness_objective_s),
        _bars("rules", "Pass rate per rule", "Share of checked records that met each "
              "contract rule and expectation (silver._quality).", "pass rate",
              [(f"{t} {r}", 1 - u / n if n else 1.0) for t, r, n, u in data.rules],
              "{:.2%}"),
        _bars("reasons", "Quarantine reasons", "Records quarantined for each failed rule "
              "(a record failing two rules counts for both).", "records",
              [(f"{t} {r}", float(n)) for t, r, n in data.reasons]),
        _lines("duplicates", "Duplicate rate", "Share of each silver batch's records dropped "
               "as duplicates (redeliveries: counted, never lost).", "share of records",
               _series(e, "silver", "duplicates * 1.0 / input_rows", "input_rows > 0")),
        _phases(e),
    ]


# -- the page ------------------------------------------------------------------------------

PAGE = Environment(loader=PackageLoader("lakehouse.observe"), autoescape=True,
                   keep_trailing_newline=True).get_template("report.html.j2")


def render(data: ReportData, config: Config, now: datetime) -> str:
    """The report page (pure)."""
    return PAGE.render(data=data, config=config, now=now, plots=plots(data),
                       breached=[s.name for s in data.slos if s.breached],
                       slos="\n".join(describe_slos(data.slos, data.slo_window_minutes)))
