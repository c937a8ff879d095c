"""One's own events from a file: JSON lines, one record per line (``produce --from``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.generator import Record

HEADERS = (("producer", b"lakehouse-produce-from-file"),)


def read_lines(path: Path) -> list[bytes]:
    """The file's non-blank lines, as bytes (LH-CLI-001 when there is nothing to send)."""
    if not path.is_file():
        raise LakehouseError(ErrorCode.BAD_ARGUMENTS, f"--from {path}: no such file",
                             hint="give a file of JSON lines, one event per line")
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    if not lines:
        raise LakehouseError(ErrorCode.BAD_ARGUMENTS, f"--from {path}: the file has no events",
                             hint="one event per line, e.g. {\"payment_id\": \"p-1\", ...}")
    return lines


def line_records(lines: list[bytes], key_field: str,
                 encode: Callable[[dict[str, Any]], bytes] | None = None) -> Iterator[Record]:
    """A Kafka record per line (pure). A JSON object's Kafka key is its ``key_field``
    value; its value is the line as written, or ``encode(object)`` (e.g. Avro). A line
    that is not a JSON object is sent as it is, without a key: silver quarantines it, so
    malformed input can be tried."""
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            yield Record(None, line, HEADERS)
            continue
        key = event.get(key_field)
        yield Record(None if key is None else str(key).encode(),
                     line if encode is None else encode(event), HEADERS)
