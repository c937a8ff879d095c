"""The tamper-evidence chain's cost on the hot path (``lakehouse.io.chain``): bronze and
silver over the same backlog, on tables of their own, with the digests off and on."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from lakehouse import graph
from lakehouse.config import Config

ORDER = (False, True, True, False)
"""Digests off, on, on, off: the order cancels a JVM still warming up."""


def digest_cost(spark: Any, configs: Callable[[int, bool], Config], records: int,
                tables: Sequence[str], restore: bool) -> dict[str, dict[str, float]]:
    """Each of ``tables`` run over ``records`` once per ``ORDER`` round, on the tables of
    ``configs(round, digests)``: per table the records/s with the digests off and on (each
    the mean of two) and their cost; the process's linking is ``restore`` afterwards."""
    from lakehouse.io import chain
    from lakehouse.runner import run
    seconds: dict[str, dict[str, float]] = {t: {} for t in tables}
    for round_, digests in enumerate(ORDER):
        state = "on" if digests else "off"
        pipeline = graph.build(configs(round_, digests))
        chain.enable(digests)
        try:
            for table, spent in seconds.items():
                t0 = time.monotonic()
                run(pipeline, until_idle=True, tables=[table], spark=spark,
                    printer=lambda _: None)
                spent[state] = spent.get(state, 0.0) + time.monotonic() - t0
        finally:
            chain.enable(restore)
    runs = {"on": ORDER.count(True), "off": ORDER.count(False)}
    rates = {t: {state: runs[state] * records / s for state, s in spent.items()}
             for t, spent in seconds.items()}
    for rate in rates.values():
        rate["cost"] = 1 - rate["on"] / rate["off"]
    return rates
