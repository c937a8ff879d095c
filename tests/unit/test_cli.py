"""The command's own handling of what libraries print (pure)."""

from __future__ import annotations

import logging
import os

from lakehouse.cli import _py4j_connection_tracebacks


def _record(name: str, path: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, path, 1, "Exception while sending command.",
                             None, None)


def test_py4j_connection_tracebacks_on_the_root_logger_are_dropped() -> None:
    gateway = os.path.join("site-packages", "py4j", "java_gateway.py")
    assert not _py4j_connection_tracebacks(_record("root", gateway))
    assert _py4j_connection_tracebacks(_record("root", os.path.join("lakehouse", "runner.py")))
    assert _py4j_connection_tracebacks(_record("lakehouse.runner", gateway))
