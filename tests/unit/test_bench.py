"""The benchmark's pure parts: reading Kafka's perf tool, percentiles, the process tree,
the checkpoint's committed offsets, and the table a person reads."""

from __future__ import annotations

import os

import pytest

from lakehouse.bench.limit import parse_perf_summary
from lakehouse.bench.probe import descendants, sample
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


def test_descendants_walk_the_whole_tree() -> None:
    tree = {1: [2, 3], 2: [4], 4: [5], 9: [10]}
    assert sorted(descendants(1, tree)) == [2, 3, 4, 5]
    assert descendants(10, tree) == []


def test_a_live_process_is_sampled_and_a_gone_one_is_none() -> None:
    me = sample(os.getpid())
    assert me is not None and me.peak_rss_kb >= me.rss_kb > 0 and me.cpu_seconds > 0
    assert sample(2**22 + 1) is None  # above Linux's pid_max


RESULT = {
    "limit": {"kafka_consumer_per_s": 200_000.0, "consume_parquet_per_s": 100_000.0},
    "session_start_s": 9.5,
    "stages": [{"name": "bronze", "records": 1000, "seconds": 0.5, "per_s": 2000.0,
                "target": "2% of the limit (target >= 50%)"}],
    "naive": {"batches": 2, "records": 1000, "project_s": 1.0, "naive_s": 6.0, "ratio": 6.0,
              "mismatched_records": 0},
    "freshness": [{"shape": shape, "rate": 1000, "seconds": 20, "events": 20000,
                   "behind_s": 0.01, "lag_max": 500, "lag_end": 0,
                   "produce_to_gold_s": {"gold.t": {"p50": p50, "p95": 2.0, "p99": 3.0,
                                                    "max": 4.0}}}
                  for shape, p50 in (("tables", 1.0), ("chained", 0.5))],
    "checks": {"silver_duplicates": 0, "accounting_holds": False},
    "memory_mb": {"driver JVM": 1200.0},
    "core_seconds_per_million": 321.0,
}


def test_the_table_shows_every_figure_with_its_target() -> None:
    text = table(RESULT)
    lines = text.splitlines()
    assert lines[0].split() == ["measure", "figure", "target"]
    row = {ln.split("  ")[0].strip(): ln for ln in lines[2:]}
    assert "100,000" in row["limit: consume + Parquet, no Spark (records/s)"]
    assert "2% of the limit" in row["bronze (1,000 records, 0.5 s) records/s"]
    assert "6.0x faster" in text and "1.0 / 2.0 / 3.0 / 4.0" in text
    assert "freshness, tables shape" in text and "freshness, chained shape" in text
    assert "0.5 / 2.0 / 3.0 / 4.0" in text
    assert "BROKEN" in row["accounting bronze = silver + quarantined + duplicates"]
    assert "321.0" in row["cost: core-seconds per million events (bronze+silver+gold)"]
