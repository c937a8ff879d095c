"""``lakehouse broker | registry | storage`` when the config points at a server of its own:
a coded refusal before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import lakehouse, write_config


@pytest.mark.parametrize(("server", "env", "code"), [
    ("broker", {"LAKEHOUSE_KAFKA_BOOTSTRAP": "kafka.example:9092"}, "LH-BROKER-002"),
    ("registry", {"LAKEHOUSE_SCHEMA_REGISTRY_URL": "http://sr.example:8081"}, "LH-REGISTRY-004"),
])
def test_a_server_the_config_points_elsewhere_is_not_ours_to_control(
        tmp_path: Path, server: str, env: dict[str, str], code: str) -> None:
    config = write_config(tmp_path / "conf.yaml", "127.0.0.1:1", tmp_path / "wh")
    done = lakehouse(config, server, "up", env=env)
    assert done.returncode != 0 and code in done.stderr
    assert "is external" in done.stderr and "nothing to up" in done.stderr
    assert not (tmp_path / "wh").exists(), "nothing started, nothing written"
