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


def test_a_quarantined_value_is_shown_as_text_or_as_hex() -> None:
    from lakehouse.cli.audit import _shown
    assert _shown(b'{"a": "caf\xc3\xa9"}') == '{"a": "café"}'
    assert _shown(None) == "null (a tombstone)"
    assert _shown(b"\x00\x00\x00\x00\x01\x02ab") == "8 bytes, hex 00 00 00 00 01 02 61 62"
    assert _shown(b"\xff\xfe") == "2 bytes, hex ff fe"
