"""The figures operators ask for, from the event log: what each pipeline is doing
(``lakehouse status``) and whether the service keeps its objectives (``lakehouse slo``).

Reading is at the edges (``read_events``, ``silver_duplicates``, ``pipelines``); the
figures themselves are pure functions of an Arrow table of event rows, computed with
DuckDB.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from lakehouse import graph
from lakehouse.config import Config, SloConfig
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.delta_log import latest_version, open_table
from lakehouse.io.locks import holder, lock_dir
from lakehouse.observe.events import SCHEMA, events_uri
from lakehouse.quality.contract import load_contract
from lakehouse.registry import SilverTable

STATUS_HISTORY = timedelta(days=1)
"""How far back ``lakehouse status`` looks for each pipeline's newest batch."""
PERCENTILE_BUDGET = 0.05
"""A p95 objective allows 5% of batches over its threshold."""


@contextlib.contextmanager
def sql_over(**tables: Any) -> Iterator[Any]:
    """A DuckDB connection on which each Arrow table or dataset is a view of its name."""
    import duckdb
    with duckdb.connect() as con:
        for name, table in tables.items():
            con.register(name, table)
        yield con


# -- reading -------------------------------------------------------------------------------

def read_events(config: Config, since: datetime) -> pa.Table:
    """The event rows that ended at or after ``since`` (the day partitions before it are
    not read); an empty table if there is no log yet."""
    table = open_table(events_uri(config), config.warehouse.storage_options)
    if table is None:
        return SCHEMA.empty_table()
    where = (ds.field("event_date") >= since.date()) & (ds.field("ended_at") >= since)
    return table.to_pyarrow_dataset().to_table(filter=where)


@dataclass(frozen=True)
class Pipeline:
    """One table's pipeline in the graph, and the job that writes it now, if any."""

    name: str
    layer: str
    source: str
    """What it reads: a topic, or a table."""
    job: Mapping[str, Any] | None
    """The holder of the table's lock (``pid``, ``host``, ``doing``, ``since``)."""


def pipelines(pipeline: graph.Graph) -> list[Pipeline]:
    """Every table of the pipeline graph, in flow order, with the job writing it now."""
    root = pipeline.config.warehouse.root
    return [Pipeline(q.name, q.layer.value, q.input, holder(root, q.name)) for q in pipeline.queries]


def silver_duplicates(pipeline: graph.Graph, since: datetime) -> dict[str, tuple[int, int]]:
    """Per silver table: (records, extra copies) among the records it took in since
    ``since``: every copy silver holds of their event ids counts (pruned to their event
    dates, as silver's own dedup is)."""
    config = pipeline.config
    out: dict[str, tuple[int, int]] = {}
    for q in pipeline.layer(graph.Layer.SILVER):
        table = q.definition
        assert isinstance(table, SilverTable)
        dt = open_table(pipeline.node(q.name).uri, config.warehouse.storage_options)
        if dt is None:
            continue
        key = load_contract(Path(config.expectations_dir)
                            / f"{table.contract}.contract.yaml").key
        with sql_over(silver=dt.to_pyarrow_dataset()) as con:
            found = con.execute(
                f"""WITH recent AS (SELECT "{key}" AS k, event_date FROM silver
                                    WHERE _ingested_at >= $since)
                    SELECT count(*), count(*) - count(DISTINCT "{key}") FROM silver
                    WHERE event_date IN (SELECT event_date FROM recent)
                      AND "{key}" IN (SELECT k FROM recent)""", {"since": since}).fetchone()
        out[table.qualified_name] = (int(found[0]), int(found[1])) if found else (0, 0)
    return out


# -- status --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PipelineFigures:
    """What one pipeline did over the window, and its newest batch."""

    name: str
    batches: int
    errors: int
    input_rows: int
    quarantined: int
    duplicates: int
    last_batch: datetime | None
    last_error: str | None
    kafka_lag: int | None
    """Records behind at the end of its newest batch (a Kafka query)."""
    input_version: int | None
    """The newest version of its Delta input its newest batch read."""
    newest_event: datetime | None
    """The newest Kafka timestamp it has committed."""
    latency_p95_ms: float | None
    """The p95 event -> commit latency over its batches in the window."""

    @property
    def pass_rate(self) -> float | None:
        return 1 - self.quarantined / self.input_rows if self.input_rows else None

    @property
    def quarantine_rate(self) -> float | None:
        return self.quarantined / self.input_rows if self.input_rows else None

    def freshness(self, now: datetime) -> timedelta | None:
        """How old the newest event it has committed is."""
        return now - self.newest_event if self.newest_event else None


def pipeline_figures(events: pa.Table, window_start: datetime) -> dict[str, PipelineFigures]:
    """Per pipeline: counts over the rows since ``window_start``, the newest batch over
    all given rows (pure)."""
    with sql_over(events=events) as con:
        rows = con.execute("""
            SELECT pipeline,
                   count(*) FILTER (WHERE ended_at >= $start),
                   count(*) FILTER (WHERE ended_at >= $start AND error IS NOT NULL),
                   coalesce(sum(input_rows) FILTER (WHERE ended_at >= $start), 0),
                   coalesce(sum(quarantined) FILTER (WHERE ended_at >= $start), 0),
                   coalesce(sum(duplicates) FILTER (WHERE ended_at >= $start), 0),
                   max(ended_at),
                   arg_max_null(error, ended_at),
                   arg_max(kafka_lag, ended_at),
                   arg_max(input_version, ended_at),
                   max(newest_event_time),
                   quantile_cont(latency_p95_ms, 0.95) FILTER (WHERE ended_at >= $start)
            FROM events GROUP BY pipeline ORDER BY pipeline""",
                           {"start": window_start}).fetchall()
    return {r[0]: PipelineFigures(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]),
                                  _utc(r[6]), r[7], _int(r[8]), _int(r[9]), _utc(r[10]),
                                  _float(r[11]))
            for r in rows}


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _float(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) \
        else float(value)


# -- SLOs ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SloResult:
    """One objective over the window: what was seen, and how fast the budget burns."""

    name: str
    objective: str
    observed: str
    burn_rate: float | None
    """Share of bad events over the share the objective allows: above 1 the budget runs
    out before the window does. None: nothing to judge in the window."""
    detail: str = ""

    @property
    def breached(self) -> bool:
        return self.burn_rate is not None and self.burn_rate > 1

    @property
    def status(self) -> str:
        return "no data" if self.burn_rate is None else "BREACHED" if self.breached else "ok"


def _burn(bad: float, total: float, budget: float) -> float | None:
    if not total:
        return None
    share = bad / total
    if budget <= 0:
        return math.inf if share > 0 else 0.0
    return share / budget


def evaluate_slos(slo: SloConfig, events: pa.Table,
                  duplicates: Mapping[str, tuple[int, int]]) -> list[SloResult]:
    """Each objective of ``slo`` judged on the window's event rows and silver's duplicate
    counts (pure)."""
    with sql_over(events=events) as con:
        found = con.execute("""
            SELECT count(latency_p95_ms) FILTER (WHERE layer = 'gold'),
                   count(*) FILTER (WHERE layer = 'gold' AND latency_p95_ms > $fresh),
                   quantile_cont(latency_p95_ms, 0.95) FILTER (WHERE layer = 'gold'),
                   count(*) FILTER (WHERE layer = 'bronze' AND input_rows > 0 AND error IS NULL),
                   coalesce(sum(input_rows) FILTER (WHERE layer = 'silver' AND error IS NULL), 0),
                   coalesce(sum(quarantined) FILTER (WHERE layer = 'silver' AND error IS NULL), 0),
                   count(kafka_lag), count(*) FILTER (WHERE kafka_lag > $lag),
                   quantile_cont(kafka_lag, 0.95)
            FROM events""", {"fresh": slo.freshness_p95_seconds * 1000,
                             "lag": slo.lag_p95_records}).fetchone()
    assert found is not None
    fresh, arrived, quality, lag = found[0:3], found[3:4], found[4:6], found[6:9]
    # Events landed in bronze but no gold batch committed any: gold is stuck, the worst
    # freshness there is (not "no data").
    stuck = not fresh[0] and arrived[0] > 0
    records = sum(n for n, _ in duplicates.values())
    copies = sum(d for _, d in duplicates.values())
    pass_rate = 1 - quality[1] / quality[0] if quality[0] else None
    return [
        SloResult("gold freshness (p95 event -> gold)",
                  f"<= {slo.freshness_p95_seconds:g} s",
                  "none reached gold" if stuck else "-" if fresh[2] is None
                  else f"{fresh[2] / 1000:.1f} s",
                  math.inf if stuck else _burn(fresh[1], fresh[0], PERCENTILE_BUDGET),
                  f"{arrived[0]:,} bronze batches landed events, no gold batch committed"
                  if stuck else f"{fresh[1]:,} of {fresh[0]:,} gold batches over"),
        SloResult("silver pass rate", f">= {slo.pass_rate_min:.2%}",
                  "-" if pass_rate is None else f"{pass_rate:.2%}",
                  _burn(quality[1], quality[0], 1 - slo.pass_rate_min),
                  f"{quality[1]:,} of {quality[0]:,} records quarantined"),
        SloResult("silver duplicate rate", f"<= {slo.duplicate_rate_max:.2%}",
                  f"{copies / records:.2%}" if records else "-",
                  _burn(copies, records, slo.duplicate_rate_max),
                  f"{copies:,} extra copies among {records:,} records"),
        SloResult("kafka lag (p95 of batches)", f"<= {slo.lag_p95_records:,} records",
                  "-" if lag[2] is None else f"{lag[2]:,.0f} records",
                  _burn(lag[1], lag[0], PERCENTILE_BUDGET),
                  f"{lag[1]:,} of {lag[0]:,} Kafka batches over"),
    ]


def slo_results(pipeline: graph.Graph, now: datetime) -> list[SloResult]:
    """Every objective of the config, judged over its window ending ``now``; an error if
    there is no event log to judge them on."""
    config = pipeline.config
    since = window_start(config.slo, now)
    if open_table(events_uri(config), config.warehouse.storage_options) is None:
        raise LakehouseError(ErrorCode.NO_EVENTS,
                             f"no event log at {events_uri(config)} to judge the SLOs on",
                             hint="run the pipelines first (lakehouse run, or make demo); "
                                  "observe.events must be on")
    return evaluate_slos(config.slo, read_events(config, since),
                         silver_duplicates(pipeline, since))


def window_start(slo: SloConfig, now: datetime) -> datetime:
    """Where the SLO window begins."""
    return now - timedelta(minutes=slo.window_minutes)


def describe_slos(results: Sequence[SloResult], minutes: float) -> list[str]:
    """The ``lakehouse slo`` table (pure)."""
    head = ("objective", "target", "observed", "burn rate", "status")
    rows = [(r.name, r.objective, r.observed,
             "-" if r.burn_rate is None else "inf" if math.isinf(r.burn_rate)
             else f"{r.burn_rate:.2f}", r.status) for r in results]
    lines = [f"SLOs over the last {minutes:g} minutes (burn rate: budget spent / budget "
             "allowed; above 1 breaches)", *_table(head, rows)]
    lines += [f"  {r.name}: {r.detail}" for r in results if r.detail]
    return lines


def status_lines(pipeline: graph.Graph, now: datetime) -> list[str]:
    """The ``lakehouse status`` screen for the warehouse now."""
    config = pipeline.config
    minutes = config.slo.window_minutes
    start = window_start(config.slo, now)
    events = read_events(config, min(start, now - STATUS_HISTORY))
    found = pipelines(pipeline)
    lines = [f"status of {config.project} at {now:%Y-%m-%d %H:%M:%S} UTC (warehouse "
             f"{config.warehouse.root})", ""]
    latest = {source: latest_version(pipeline.node(source).uri)
              for source in {p.source for p in found if p.layer != "bronze"}}
    inputs = {source: v for source, v in latest.items() if v is not None}
    lines += describe_status(found, pipeline_figures(events, start), now, minutes,
                             lock_dir(config.warehouse.root) is None, inputs)
    if not events.num_rows:
        since = now - STATUS_HISTORY
        lines += ["", f"no micro-batch in the event log since {since:%Y-%m-%d %H:%M} UTC "
                      f"({events_uri(config)})"]
    return lines


# -- the status screen ---------------------------------------------------------------------

def _ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    seconds = max(0.0, (now - then).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago" if seconds < 172800 else f"{seconds / 86400:.0f} d ago"


def _span(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = delta.total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min" \
        if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _job(p: Pipeline, object_store: bool) -> str:
    if p.job is not None:
        return (f"running: pid {p.job.get('pid', '?')} on {p.job.get('host', '?')} "
                f"({p.job.get('doing', '?')}, since {str(p.job.get('since', '?'))[11:19]})")
    return "unknown (no locks on an object store)" if object_store else "not running"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
            for r in [head, *rows]]


def describe_status(found: Sequence[Pipeline], figures: Mapping[str, PipelineFigures],
                    now: datetime, minutes: float, object_store: bool,
                    inputs: Mapping[str, int]) -> list[str]:
    """The ``lakehouse status`` screen (pure): per pipeline its job, newest batch, how
    far behind its input it is (``inputs``: each input table's latest version) and how
    fresh its data; per silver table its quality over the window."""
    rows = []
    for p in found:
        f = figures.get(p.name)
        behind = "-"
        if f is not None and f.kafka_lag is not None:
            behind = f"{f.kafka_lag:,} records"
        elif f is not None and f.input_version is not None and p.source in inputs:
            behind = f"{max(0, inputs[p.source] - f.input_version):,} versions"
        rows.append((p.name, _job(p, object_store), _ago(f.last_batch if f else None, now),
                     f"{f.batches:,}" if f else "0", f"{f.errors:,}" if f else "0", behind,
                     _span(f.freshness(now)) if f and p.layer != "bronze" else "-"))
    lines = _table(("pipeline", "job", "last batch", "batches", "failed", "behind",
                    "freshness"), rows)
    failing = [(p.name, figures[p.name].last_error) for p in found
               if p.name in figures and figures[p.name].last_error]
    lines += [f"  {name}: its newest batch failed: {error}" for name, error in failing]
    quality = [(p.name, figures[p.name]) for p in found
               if p.layer == "silver" and p.name in figures]
    lines += ["", f"silver quality over the last {minutes:g} minutes"]
    lines += _table(("table", "records", "pass rate", "quarantined", "duplicates dropped"),
                    [(name, f"{f.input_rows:,}",
                      "-" if f.pass_rate is None else f"{f.pass_rate:.2%}",
                      "-" if f.quarantine_rate is None
                      else f"{f.quarantined:,} ({f.quarantine_rate:.2%})",
                      f"{f.duplicates:,}") for name, f in quality]) if quality \
        else ["  no silver batches in the window"]
    return lines
