"""The fault suite runs a quick subset by default (CI); ``--chaos-full`` runs the full set
(30 kills instead of 6, the 20-minute soak instead of one minute)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-full", action="store_true", default=False,
                     help="run the full fault suite: 30 hard kills, the 20-minute soak")


@pytest.fixture
def full(request: pytest.FixtureRequest) -> bool:
    """Whether the full fault suite was asked for."""
    return bool(request.config.getoption("--chaos-full"))
