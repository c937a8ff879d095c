"""Headless Chromium (Debian's ``chromium``) for the report tests: a screenshot of one
plot of a report page, and how much of it is drawn in the report's data colours."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from lakehouse.observe.report import PALETTE

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1100,900")


def chromium() -> str:
    found = shutil.which("chromium")
    assert found, ("Debian's chromium is missing: `apt-get install chromium` (.ci/run "
                   "installs it)")
    return found


def screenshot(page: Path, plot: str, out: Path) -> Image.Image:
    """The page as Chromium draws it with only ``#plot-<plot>`` shown."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}",
                               f"--screenshot={out}", f"{page.resolve().as_uri()}#plot-{plot}"],
                              capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and out.exists(), done.stderr[-2000:]
    return Image.open(out).convert("RGB")


def data_pixels(image: Image.Image, tolerance: int = 24) -> int:
    """Pixels within ``tolerance`` (per channel) of one of the report's data colours."""
    pixels = np.asarray(image, dtype=np.int16)
    near = np.zeros(pixels.shape[:2], dtype=bool)
    for colour in PALETTE:
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
        near |= (np.abs(pixels - rgb) <= tolerance).all(axis=2)
    return int(near.sum())
