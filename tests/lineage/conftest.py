"""A real Marquez (with its own PostgreSQL) per test session, when this machine has one."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse.servers.marquez import HOME_ENV, Marquez
from tests.conftest import free_port


@pytest.fixture(scope="session")
def marquez(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Marquez]:
    """A running Marquez on free ports, stopped at the end."""
    home = os.environ.get(HOME_ENV)
    if not home:
        pytest.skip("Marquez is not on this machine's Maven Central; set MARQUEZ_HOME to a "
                    "Marquez API build (docs/lineage-facets.md)")
    data_dir = tmp_path_factory.mktemp("marquez")
    if os.geteuid() == 0:
        _let_postgres_through(data_dir, tmp_path_factory.getbasetemp().parent)
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    port, admin_port, pg_port = sorted(ports)
    server = Marquez(Path(home), data_dir, port=port, admin_port=admin_port, pg_port=pg_port)
    try:
        server.up()
        yield server
    finally:
        server.down()


def _let_postgres_through(data_dir: Path, top: Path) -> None:
    """As root, PostgreSQL runs as the ``postgres`` user, which pytest's 0700 temp folders
    keep out: let others search (not list) the folders from pytest's top one down."""
    for folder in [data_dir, *data_dir.parents]:
        folder.chmod(folder.stat().st_mode | stat.S_IXOTH)
        if folder == top:
            break
