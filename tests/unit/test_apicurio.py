"""The embedded registry's choice of Java, and its refusals before any JVM starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lakehouse.apicurio import ENV_JAVA, EmbeddedRegistry, java_version, registry_java
from lakehouse.errors import ErrorCode, LakehouseError


def jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n")
    (home / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    return home


def test_the_newest_jdk_of_21_or_later_is_chosen(tmp_path: Path) -> None:
    root = tmp_path / "jvm"
    jdk(root, "java-17", "17.0.15")
    jdk(root, "temurin-21", "21.0.2")
    newest = jdk(root, "temurin-25", "25.0.3")
    assert java_version(newest) == 25 and java_version(tmp_path) == 0
    assert registry_java({}, root) == newest / "bin" / "java"
    chosen = jdk(tmp_path, "mine", "21")
    assert registry_java({ENV_JAVA: str(chosen)}, root) == chosen / "bin" / "java"


def test_without_java_21_the_error_says_what_was_found(tmp_path: Path) -> None:
    root = tmp_path / "jvm"
    jdk(root, "java-17", "17.0.15")
    with pytest.raises(LakehouseError) as info:
        registry_java({"JAVA_HOME": str(root / "java-17")}, root)
    assert info.value.code is ErrorCode.REGISTRY_START_FAILED
    assert "needs Java 21" in info.value.message and "java-17 (17)" in info.value.message
    assert ENV_JAVA in info.value.hint


def test_a_port_held_by_another_process_is_refused(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        registry = EmbeddedRegistry("127.0.0.1", port, str(tmp_path))
        with pytest.raises(LakehouseError) as info:
            registry.up()
        assert info.value.code is ErrorCode.REGISTRY_START_FAILED
        assert f"port {port} is held" in info.value.message
        status = registry.status()
        assert not status.running and status.port_taken and "held" in status.describe()
    assert registry.down() is False
