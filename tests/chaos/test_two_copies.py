"""Two copies of one pipeline at once: the second refuses to start; nothing interleaves."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import lakehouse, start_run, write_config

pytestmark = pytest.mark.integration


def test_a_second_copy_refuses_to_start(broker: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    config = write_config(tmp_path / "conf.yaml", broker, warehouse)
    with start_run(config) as first:
        try:
            second = lakehouse(config, "run", "--until-idle", "--table", "gold.sessions_daily")
            assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-3000:]
            assert "LH-STREAM-002" in second.stderr
            assert f"process {first.pid}" in second.stderr and "lakehouse run" in second.stderr
            assert "starting Spark" not in second.stdout  # refused before any processing
            assert first.poll() is None  # the first copy was not disturbed
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # as a crash would: no clean-up runs
            first.communicate(timeout=60)
    # Once the first copy is gone, however it ended, the same table can run again.
    again = lakehouse(config, "run", "--until-idle", "--table", "bronze.clickstream")
    assert again.returncode == 0, again.stderr[-3000:]
