"""``python -m lakehouse.cli``."""

from lakehouse.cli import entry

entry()
