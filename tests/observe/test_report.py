"""The report page rendered by headless Chromium: each plot is drawn with data, and a
plot without data is drawn without any."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pyarrow as pa

from lakehouse.config import parse_config
from lakehouse.observe.events import SCHEMA
from lakehouse.observe.figures import evaluate_slos
from lakehouse.observe.report import ReportData, render
from tests.observe.browser import data_pixels, screenshot
from tests.observe.test_figures import NOW, row

PLOTS = ("throughput", "lag", "freshness", "rules", "reasons", "duplicates", "phases")
CONFIG = parse_config({"project": "shop", "kafka": {"bootstrap_servers": "h:1"},
                       "warehouse": {"root": "/w"}}, source_file="t.yaml")


def events() -> pa.Table:
    rows = []
    for n in range(40):
        minutes = 40 - n
        rows += [row("bronze.orders", minutes, input_rows=200 + n, kafka_lag=max(0, 900 - 30 * n),
                     duration_ms={"addBatch": 800, "latestOffset": 40, "triggerExecution": 900}),
                 row("silver.orders", minutes, input_rows=200 + n, quarantined=n % 7,
                     duplicates=n % 3, duration_ms={"addBatch": 2500, "triggerExecution": 2700}),
                 row("gold.revenue", minutes, input_rows=190, latency_p95_ms=4000.0 + 100 * n,
                     duration_ms={"addBatch": 1500, "triggerExecution": 1600})]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def data(table: pa.Table, rules: list, reasons: list) -> ReportData:
    return ReportData(table, rules, reasons, evaluate_slos(CONFIG.slo, table, {}),
                      ["pipeline  job", "bronze.orders  not running"], 60, 60)


def test_every_plot_is_drawn_with_data(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render(data(events(), [("silver.orders", "expect.amount_positive", 8000, 40),
                                           ("silver.orders", "contract.currency", 8000, 12)],
                                [("silver.orders", "expect.amount_positive", 40),
                                 ("silver.orders", "contract.currency", 12)]),
                           CONFIG, NOW + timedelta(minutes=1)), encoding="utf-8")
    text = page.read_text()
    assert "<script" not in text and not re.search(r'(src|href)="https?:', text)  # self-contained
    points = dict(re.findall(r'id="plot-(\w+)" data-points="(\d+)"', text))
    assert set(points) == set(PLOTS) and all(int(n) > 0 for n in points.values()), points
    for plot in PLOTS:
        image = screenshot(page, plot, tmp_path / f"{plot}.png")
        assert data_pixels(image) > 400, f"the {plot} plot shows no data"


def test_a_window_without_batches_draws_no_data(tmp_path: Path) -> None:
    page = tmp_path / "empty.html"
    page.write_text(render(data(SCHEMA.empty_table(), [], []), CONFIG, NOW), encoding="utf-8")
    assert page.read_text().count("no data in the window") == len(PLOTS)
    assert data_pixels(screenshot(page, "throughput", tmp_path / "empty.png")) < 50
