"""``lakehouse status`` and ``lakehouse slo`` on a warehouse with no event log yet."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, free_port, lakehouse, write_config


def test_status_watch_refreshes_until_ctrl_c(tmp_path: Path) -> None:
    config = write_config(tmp_path / "conf.yaml", f"127.0.0.1:{free_port()}",
                          tmp_path / "warehouse")
    proc = subprocess.Popen([sys.executable, "-m", "lakehouse.cli", "--conf", str(config),
                             "status", "--watch", "0.2"], cwd=ROOT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    screens = ""
    assert proc.stdout is not None
    while screens.count("\x1b[2J") < 2 and time.monotonic() < deadline:
        screens += proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert screens.count("\x1b[2J") >= 2  # a screen, then another in its place
    assert "silver.orders" in screens and "not running" in screens
    assert "no micro-batch in the event log" in screens


def test_slo_without_an_event_log_says_how_to_get_one(tmp_path: Path) -> None:
    config = write_config(tmp_path / "conf.yaml", f"127.0.0.1:{free_port()}",
                          tmp_path / "warehouse")
    done = lakehouse(config, "slo")
    assert done.returncode == 2 and "LH-OBSERVE-002" in done.stderr
    assert "lakehouse run" in done.stderr


def test_a_watch_interval_must_be_a_positive_number(tmp_path: Path) -> None:
    config = write_config(tmp_path / "conf.yaml", f"127.0.0.1:{free_port()}",
                          tmp_path / "warehouse")
    done = lakehouse(config, "status", "--watch", "-1")
    assert done.returncode == 2 and "not a positive number of seconds" in done.stderr
