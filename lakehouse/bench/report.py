"""The benchmark's results: one JSON document, and the table a person reads (pure)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max of ``values`` (nearest rank), or {} when there are none."""
    if not values:
        return {}
    s = sorted(values)

    def rank(q: float) -> float:
        return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]

    return {"p50": statistics.median(s), "p95": rank(0.95), "p99": rank(0.99), "max": s[-1]}


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _quartet(p: Mapping[str, float]) -> str:
    return " / ".join(_n(p.get(k), 1) for k in ("p50", "p95", "p99", "max"))


PEER_TARGETS = {"bare bronze": "target >= 90%", "bare parse": "target >= 50%"}


def _breakdown_rows(fresh: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Where a typical micro-batch's time went, per pipeline (``lakehouse.bench.profile``)."""
    rows: list[tuple[str, str, str]] = []
    for part in fresh.get("breakdown", []):
        rows.append((f"  breakdown {part['pipeline']}: mean ms per batch ({part['batches']} "
                     f"batches, {_n(part['records'])} records each)", _n(part["batch_ms"]), ""))
        for name, ms in part["steps"].items():
            rows.append((f"    {name}", _n(ms), ""))
        rows.append(("    other (the writer's driver work)", _n(part["other_ms"]), ""))
        for name, ms in part["spark_ms"].items():
            rows.append((f"    Spark: {name}", _n(ms), ""))
        if part["idle_ms"] is not None:
            rows.append(("    idle, waiting for the next trigger", _n(part["idle_ms"]), ""))
    if "event_log_s" in fresh:
        rows.append(("  event log writes (s in all, off the batch's thread)",
                     _n(fresh["event_log_s"], 1), ""))
    return rows


def _growth_rows(growth: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """Silver's and gold's batch time as silver grows, with the largest over the smallest."""
    if not growth:
        return []
    rows = [("growth: one batch with N rows in silver (dates over 30 days)", "", "")]
    for g in growth:
        rows.append((f"  {_n(g['silver_rows'])} rows: silver batch / gold batch "
                     f"({_n(g['gold_rows'])} rows in gold) (s)",
                     f"{_n(g['silver_s'], 1)} / {_n(g['gold_s'], 1)}", ""))
    first, last = growth[0], growth[-1]
    for layer in ("silver", "gold"):
        ratio = last[f"{layer}_s"] / first[f"{layer}_s"] if first[f"{layer}_s"] else 0.0
        rows.append((f"  {layer} batch at {_n(last['silver_rows'])} / at "
                     f"{_n(first['silver_rows'])} rows", f"{ratio:.2f}x", "<= 1.5x"))
    return rows


def table(result: Mapping[str, Any]) -> str:
    """The results as aligned rows: what, figure, and the target where there is one."""
    rows: list[tuple[str, str, str]] = [("warehouse", result["warehouse"], "")]
    limit = result["limit"]
    rows.append(("limit: Kafka's consumer (records/s)", _n(limit["kafka_consumer_per_s"]), ""))
    rows.append(("limit: consume + Parquet, no Spark (records/s)",
                 _n(limit["consume_parquet_per_s"]), "the ceiling"))
    rows.append(("JVM + Spark session start (s)", _n(result["session_start_s"], 1), ""))
    for stage in result["stages"]:
        rows.append((f"{stage['name']} ({_n(stage['records'])} records, "
                     f"{_n(stage['seconds'], 1)} s) records/s", _n(stage["per_s"]),
                     stage.get("target", "")))
        peer = stage.get("peer")
        if peer:
            share = stage["per_s"] / peer["per_s"] if peer["per_s"] else 0.0
            goal = PEER_TARGETS.get(peer["name"], "")
            rows.append((f"  peer: {peer['name']} ({_n(peer['seconds'], 1)} s) records/s",
                         _n(peer["per_s"]), f"{stage['name']} at {share:.0%} of it ({goal})"))
    for layer, rate in (result.get("digests") or {}).items():
        rows.append((f"{layer} again, chain digests off / on (records/s)",
                     f"{_n(rate['off'])} / {_n(rate['on'])}",
                     f"the chain costs {rate['cost']:.0%} (tamper evidence, audit verify)"))
    tls = result.get("tls")
    if tls:
        rows.append((f"bronze again, Kafka plaintext / {tls['protocol']} (records/s)",
                     f"{_n(tls['off'])} / {_n(tls['on'])}: TLS costs {tls['cost']:.0%}", ""))
    naive = result.get("naive")
    if naive:
        rows.append((f"naive GX pattern vs project silver ({naive['batches']} batches, "
                     f"{_n(naive['records'])} records)",
                     f"{naive['ratio']:.1f}x faster", ">= 5x"))
        rows.append(("  seconds: project / naive",
                     f"{naive['project_s']:.1f} / {naive['naive_s']:.1f}", ""))
        rows.append(("  records routed differently", _n(naive["mismatched_records"]), "0"))
    for fresh in result.get("freshness", []):
        variant = f", {fresh['variant']}" if fresh.get("variant") else ""
        rows.append((f"freshness, {fresh['shape']} shape{variant}: {_n(fresh['rate'])} events/s for "
                     f"{_n(fresh['seconds'])} s ({_n(fresh['events'])} events in gold)", "", ""))
        for table_name, p in fresh["produce_to_gold_s"].items():
            rows.append((f"  {table_name} p50 / p95 / p99 / max (s)", _quartet(p),
                         "p95 <= 5, p99 <= 8"))
        rows.append(("  bronze consumer lag: max / at end (records)",
                     f"{_n(fresh['lag_max'])} / {_n(fresh['lag_end'])}", ""))
        rows.append(("  producer behind schedule at worst (s)", _n(fresh["behind_s"], 2), ""))
        rows += _breakdown_rows(fresh)
    bare = result.get("bare_chained")
    if bare:
        p = bare["produce_to_gold_s"]
        rows.append((f"freshness, bare chained peer: {bare['batches']} batches, median "
                     f"{_n(bare['batch_s'], 1)} s each", "", ""))
        rows.append(("  produce -> gold p50 / p95 / p99 / max (s)", _quartet(p),
                     "the project's p95 below this"))
    steps = result.get("throughput", [])
    if steps:
        kept = [s["rate"] for s in steps if s["kept_up"]]
        best = (f"< {_n(steps[0]['rate'])}" if not kept else
                f">= {_n(max(kept))}" if len(kept) == len(steps) else _n(max(kept)))
        rows.append(("sustainable throughput, chained (events/s: p95 <= 30 s, producer on time)",
                     best, ">= 20,000"))
        for s in steps:
            rows.append((f"  {_n(s['rate'])}/s: p95 (s) / lag at end (records)",
                         f"{_n(s['p95_s'], 1)} / {_n(s['lag_end'])}",
                         "kept up" if s["kept_up"] else "did not keep up"))
    rows += _growth_rows(result.get("growth", []))
    checks = result["checks"]
    rows.append(("silver duplicate event ids", _n(checks["silver_duplicates"]), "0"))
    rows.append(("accounting bronze = silver + quarantined + duplicates",
                 "holds" if checks["accounting_holds"] else "BROKEN", "holds"))
    for role, mem in result["memory_mb"].items():
        rows.append((f"peak RSS {role} (MB)", _n(mem, 0), ""))
    rows.append(("cost: core-seconds per million events (bronze+silver+gold)",
                 _n(result["core_seconds_per_million"], 1), ""))
    width = max(len(r[0]) for r in rows)
    fig = max(len(r[1]) for r in rows)
    lines = [f"{'measure':<{width}}  {'figure':>{fig}}  target", "-" * (width + fig + 10)]
    lines += [f"{a:<{width}}  {b:>{fig}}  {c}".rstrip() for a, b, c in rows]
    return "\n".join(lines)
