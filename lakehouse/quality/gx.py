"""Great Expectations 1.x's own validator, on Spark DataFrames: the reference silver's
compiled suite is held to.

Silver does not run it (``lakehouse.quality.rules`` evaluates the suite as compiled
predicates in one pass and computes each result with GX's formulas); the agreement
tests run both on the same rows and compare, and ``lakehouse bench`` times the naive
per-batch pattern with it. One ephemeral GX context per process (created on first use;
importing GX takes seconds, so it happens once, on the driver); each validation runs its
metrics as Spark jobs, the rows stay on the executors.
"""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any

from pyspark.sql import DataFrame

from lakehouse.quality.rules import RuleResult, Suite

log = logging.getLogger(__name__)


_context: Any = None
# GX's context is not thread-safe and silver queries run their batches on separate
# threads: creating and running validations is serialized (each run takes ~0.2s).
_LOCK = threading.RLock()


def _gx() -> Any:
    global _context
    import great_expectations as gx
    if _context is None:
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        _context = gx.get_context(mode="ephemeral")
        from great_expectations.data_context.types.base import ProgressBarsConfig
        _context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return gx


class Validator:
    """Validates Spark DataFrames (a micro-batch, on the executors) against one suite,
    reusing GX objects across batches."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self._definition: Any = None

    def _validation(self) -> Any:
        if self._definition is None:
            gx = _gx()
            from great_expectations.expectations.expectation_configuration import (
                ExpectationConfiguration,
            )
            name = f"{self.suite.name}-{id(self)}"
            source = _context.data_sources.add_spark(name)
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
            # The suite as GX's (GX checks each expectation's arguments).
            suite = gx.ExpectationSuite(name=name, expectations=[
                ExpectationConfiguration(type=r.type, kwargs=dict(r.kwargs),
                                         meta={**r.meta, "name": r.name}).to_domain_obj()
                for r in self.suite.rules])
            self._definition = _context.validation_definitions.add(gx.ValidationDefinition(
                name=name, data=batch, suite=_context.suites.add(suite)))
        return self._definition

    def run(self, frame: DataFrame, result_format: Any = "SUMMARY") -> Any:
        """GX's raw validation result."""
        with _LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._validation().run(batch_parameters={"dataframe": frame},
                                          result_format=result_format)

    def validate(self, frame: DataFrame) -> list[RuleResult]:
        """Per-expectation results for one batch, in suite order."""
        if not self.suite.rules:
            return []
        by_rule = _by_rule(self.run(frame))
        out = []
        for rule in self.suite.rules:
            res = by_rule[rule.name]
            r = res.result or {}
            out.append(RuleResult(rule.name, rule.type, rule.column, rule.critical,
                                  bool(res.success), int(r.get("element_count") or 0),
                                  int(r.get("unexpected_count") or 0),
                                  float(r.get("unexpected_percent") or 0.0)))
        return out

    def unexpected_rows(self, frame: DataFrame, index_column: str) -> dict[str, set[Any]]:
        """Per rule, the ``index_column`` values of the rows GX reports as unexpected."""
        result = self.run(frame, {"result_format": "COMPLETE",
                                  "unexpected_index_column_names": [index_column]})
        by_rule = _by_rule(result)
        out: dict[str, set[Any]] = {}
        for rule in self.suite.rules:
            res = by_rule[rule.name]
            if res.exception_info and res.exception_info.get("raised_exception"):
                raise RuntimeError(f"GX failed on {rule.name}: {res.exception_info}")
            rows = (res.result or {}).get("unexpected_index_list") or []
            out[rule.name] = {row[index_column] for row in rows}
        return out


def _by_rule(result: Any) -> dict[str, Any]:
    """GX does not keep suite order in its results: key them by rule name."""
    return {res.expectation_config.meta["name"]: res for res in result.results}
