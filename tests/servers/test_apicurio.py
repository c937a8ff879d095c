"""The embedded registry's choice of Java, and its refusals before any JVM starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.servers.apicurio import ENV_JAVA, EmbeddedRegistry, java_version, registry_java


def jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n")
    (home / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    return home


def test_the_registry_runs_on_the_packaged_java_unless_told_otherwise(tmp_path: Path) -> None:
    packaged = registry_java({})
    assert java_version(packaged.parents[1]) >= 21 and packaged.is_file()
    chosen = jdk(tmp_path, "mine", "21.0.2")
    assert registry_java({ENV_JAVA: str(chosen)}) == chosen / "bin" / "java"
    assert java_version(tmp_path) == 0


def test_a_java_too_old_is_a_clear_error(tmp_path: Path) -> None:
    old = jdk(tmp_path, "java-17", "17.0.15")
    with pytest.raises(LakehouseError) as info:
        registry_java({ENV_JAVA: str(old)})
    assert info.value.code is ErrorCode.REGISTRY_START_FAILED
    assert "needs Java 21" in info.value.message and "is Java 17" in info.value.message
    assert ENV_JAVA in info.value.hint
    with pytest.raises(LakehouseError) as info:
        registry_java({ENV_JAVA: str(tmp_path / "nothing")})
    assert "no Java home" in info.value.message


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


def test_a_failed_start_s_hint_shows_the_log_s_messages_not_its_stack_frames(
        tmp_path: Path) -> None:
    from lakehouse.io.processes import log_tail
    log = tmp_path / "server.log"
    assert log_tail(log) == "(no log)"
    log.write_text("")
    assert log_tail(log) == "(empty log)"
    log.write_text("started\nERROR Failed to start\n\tat io.Quarkus.run(Q.java:1)\n"
                   "! at marquez.App\nCaused by: java.net.BindException: in use\n" + "x" * 400)
    assert log_tail(log, lines=3).splitlines() == [
        "ERROR Failed to start", "Caused by: java.net.BindException: in use", "x" * 300]
