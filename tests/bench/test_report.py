"""The benchmark's pure parts: reading Kafka's perf tool, percentiles, a process sample,
the checkpoint's committed offsets, and the table a person reads."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from lakehouse.bench.limit import parse_perf_summary
from lakehouse.bench.probe import sample
from lakehouse.bench.profile import breakdown, idle_ms
from lakehouse.bench.report import percentiles, table

PERF = "\n".join([
    "WARNING: something the tool logs first",
    "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
    "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec",
    "2026-11-30 13:00:00:000, 2026-11-30 13:00:03:500, 30.5, 8.71, 100000, 28571.4, 1500, "
    "2000, 15.25, 50000.0", ""])

def test_perf_summary_gives_the_rate_without_the_group_join() -> None:
    rate = parse_perf_summary(PERF)
    assert (rate.records, rate.seconds) == (100_000, 2.0)
    assert rate.per_second == 50_000


def test_perf_output_without_a_summary_is_an_error() -> None:
    with pytest.raises(ValueError, match="no ConsumerPerformance summary"):
        parse_perf_summary("Exception in thread main ...")


def test_percentiles_by_nearest_rank() -> None:
    p = percentiles([float(n) for n in range(1, 101)])
    assert p == {"p50": 50.5, "p95": 95.0, "p99": 99.0, "max": 100.0}
    assert percentiles([3.0]) == {"p50": 3.0, "p95": 3.0, "p99": 3.0, "max": 3.0}
    assert percentiles([]) == {}


def test_a_live_process_is_sampled_and_a_gone_one_is_none() -> None:
    me = sample(os.getpid())
    assert me is not None and me.peak_rss_kb >= me.rss_kb > 0 and me.cpu_seconds > 0
    assert sample(2**22 + 1) is None  # above Linux's pid_max


RESULT = {
    "warehouse": "object store (SeaweedFS, S3 API)",
    "limit": {"kafka_consumer_per_s": 200_000.0, "consume_parquet_per_s": 100_000.0},
    "session_start_s": 9.5,
    "stages": [{"name": "bronze", "records": 1000, "seconds": 0.5, "per_s": 2000.0,
                "target": "2% of the limit (target >= 50%)",
                "peer": {"name": "bare bronze", "records": 1000, "seconds": 0.25,
                         "per_s": 4000.0}}],
    "digests": {"bronze": {"off": 2100.0, "on": 2000.0, "cost": 1 - 2000 / 2100}},
    "tls": {"protocol": "SASL_SSL", "off": 2500.0, "on": 2000.0, "cost": 0.2},
    "naive": {"batches": 2, "records": 1000, "project_s": 1.0, "naive_s": 6.0, "ratio": 6.0,
              "mismatched_records": 0},
    "freshness": [{"shape": shape, "rate": 1000, "seconds": 20, "events": 20000,
                   "behind_s": 0.01, "lag_max": 500, "lag_end": 0,
                   "produce_to_gold_s": {"gold.t": {"p50": p50, "p95": 2.0, "p99": 3.0,
                                                    "max": 4.0}},
                   "breakdown": [{"pipeline": "bronze.o", "batches": 3, "records": 500.0,
                                  "batch_ms": 900.0, "steps": {"append bronze.o": 700.0},
                                  "other_ms": 200.0, "spark_ms": {"walCommit": 40.0},
                                  "idle_ms": 120.0}],
                   "event_log_s": 0.25, "variant": variant}
                  for shape, p50, variant in (("tables", 1.0, ""), ("chained", 0.5, ""),
                                              ("chained", 0.5, "listener off"))],
    "bare_chained": {"batches": 7, "batch_s": 3.4,
                     "produce_to_gold_s": {"p50": 5.5, "p95": 7.9, "p99": 8.7, "max": 8.9}},
    "throughput": [{"rate": 5000, "p95_s": 12.0, "lag_end": 900, "behind_s": 0.1,
                    "kept_up": True},
                   {"rate": 10000, "p95_s": 41.0, "lag_end": 90000, "behind_s": 0.1,
                    "kept_up": False}],
    "growth": [{"silver_rows": 1_000_000, "silver_s": 2.0, "gold_rows": 500, "gold_s": 1.0},
               {"silver_rows": 20_000_000, "silver_s": 5.0, "gold_rows": 9000, "gold_s": 1.2}],
    "checks": {"silver_duplicates": 0, "accounting_holds": False},
    "memory_mb": {"driver JVM": 1200.0},
    "core_seconds_per_million": 321.0,
}


def test_the_table_shows_every_figure_with_its_target() -> None:
    text = table(RESULT)
    lines = text.splitlines()
    assert lines[0].split() == ["measure", "figure", "target"]
    row = {ln.split("  ")[0].strip(): ln for ln in lines[2:]}
    assert "object store" in row["warehouse"]
    assert "100,000" in row["limit: consume + Parquet, no Spark (records/s)"]
    assert "2% of the limit" in row["bronze (1,000 records, 0.5 s) records/s"]
    assert "6.0x faster" in text and "1.0 / 2.0 / 3.0 / 4.0" in text
    assert "freshness, tables shape" in text and "freshness, chained shape" in text
    assert "freshness, chained shape, listener off" in text
    assert "0.5 / 2.0 / 3.0 / 4.0" in text
    assert "2,100 / 2,000" in row["bronze again, chain digests off / on (records/s)"]
    assert "the chain costs 5%" in row["bronze again, chain digests off / on (records/s)"]
    tls = row["bronze again, Kafka plaintext / SASL_SSL (records/s)"]
    assert "2,500 / 2,000" in tls and "TLS costs 20%" in tls
    assert "BROKEN" in row["accounting bronze = silver + quarantined + duplicates"]
    assert "321.0" in row["cost: core-seconds per million events (bronze+silver+gold)"]
    line = {ln.strip().split("  ")[0]: ln for ln in lines[2:]}
    assert "bronze at 50% of it (target >= 90%)" in line["peer: bare bronze (0.2 s) records/s"]
    assert "700" in line["append bronze.o"] and "120" in line["idle, waiting for the next trigger"]
    assert "5.5 / 7.9 / 8.9" not in text and "5.5 / 7.9 / 8.7 / 8.9" in text
    assert "5,000" in line["sustainable throughput, chained (events/s: p95 <= 30 s, producer on time)"]
    assert "did not keep up" in line["10,000/s: p95 (s) / lag at end (records)"]
    assert "2.50x" in line["silver batch at 20,000,000 / at 1,000,000 rows"]
    assert "1.20x" in line["gold batch at 20,000,000 / at 1,000,000 rows"]


T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _row(pipeline: str, batch: int, at: float, durations: dict[str, int], rows: int = 10
         ) -> dict[str, object]:
    return {"pipeline": pipeline, "batch_id": batch, "input_rows": rows, "error": None,
            "trigger_time": T0 + timedelta(seconds=at), "duration_ms": durations}


def test_idle_is_the_gap_between_a_trigger_end_and_the_next_start() -> None:
    rows = [_row("q", 0, 0.0, {"triggerExecution": 1500}),
            _row("q", 1, 2.0, {"triggerExecution": 3000}),
            _row("q", 2, 5.0, {"triggerExecution": 100})]
    assert idle_ms(rows) == [500.0, 0.0]


def test_breakdown_means_steps_phases_and_the_rest_per_pipeline() -> None:
    rows = [_row("bronze.o", 0, 0.0, {"batch": 1000, "step:append bronze.o": 600,
                                      "walCommit": 50, "triggerExecution": 1100}),
            _row("bronze.o", 1, 2.0, {"batch": 2000, "step:append bronze.o": 1000,
                                      "step:silver.o": 800, "triggerExecution": 2100}),
            _row("bronze.o", 2, 5.0, {"batch": 9000}, rows=0),  # an empty trigger: left out
            _row("silver.o", 0, 0.5, {"batch": 700, "step:merge silver.o": 500})]
    parts = {p["pipeline"]: p for p in breakdown(rows)}
    bronze = parts["bronze.o"]
    assert bronze["batches"] == 2 and bronze["batch_ms"] == 1500.0
    assert list(bronze["steps"]) == ["append bronze.o", "silver.o"]  # the biggest first
    assert bronze["steps"] == {"append bronze.o": 800.0, "silver.o": 400.0}
    assert bronze["other_ms"] == 300.0 and bronze["spark_ms"] == {"walCommit": 50.0}
    assert bronze["idle_ms"] == 900.0
    assert parts["silver.o"]["other_ms"] == 200.0 and parts["silver.o"]["idle_ms"] is None
