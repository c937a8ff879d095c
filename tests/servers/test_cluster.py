"""The local Spark standalone cluster's pure parts: the spark-submit command line, the
--py-files zip, the config the jobs get, and what status says (no JVM started)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import yaml

from lakehouse.config import default_expectations_dir
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.servers.cluster import (
    PY_PACKAGES,
    ClusterStatus,
    LocalCluster,
    WorkerStatus,
    build_py_files,
    master_state,
    submit_argv,
)
from tests.conftest import ROOT, free_port

JARS = [Path("/jars/delta-spark_2.13-4.4.0.jar"), Path("/jars/spark-sql-kafka-0-10_2.13-4.2.0.jar")]


def argv(layer: str = "silver", **kw: object) -> list[str]:
    return submit_argv(layer, "spark://127.0.0.1:7077", "/conf/x.yaml", Path("/d/py.zip"),
                       jar_files=JARS, home=Path("/spark"), python="/venv/bin/python",
                       log4j=Path("/p/log4j2.properties"), root=Path("/proj"), **kw)  # type: ignore[arg-type]


def option(args: list[str], name: str) -> list[str]:
    """Every value of ``--name`` before the application file."""
    app = args.index("/proj/pipelines/silver_job.py")
    return [args[i + 1] for i in range(1, app) if args[i] == name]


def test_submit_argv_is_a_client_mode_submit_of_the_layer_job() -> None:
    args = argv()
    assert args[0] == "/spark/bin/spark-submit"
    assert option(args, "--master") == ["spark://127.0.0.1:7077"]
    assert option(args, "--deploy-mode") == ["client"]
    # The fetched jars go with --jars (served to the executors by the driver), the
    # project's code as a zip.
    assert option(args, "--jars") == [",".join(map(str, JARS))]
    assert option(args, "--py-files") == ["/d/py.zip"]
    assert "--packages" not in args
    # One application never holds every core of the cluster.
    assert option(args, "--total-executor-cores") == ["2"]
    assert option(args, "--executor-cores") == ["1"]
    assert option(args, "--executor-memory") == ["768m"]
    assert "spark.pyspark.python=/venv/bin/python" in option(args, "--conf")
    assert ("spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=file:"
            "/p/log4j2.properties") in option(args, "--conf")
    # After the application file come the job's own arguments.
    app = args.index("/proj/pipelines/silver_job.py")
    assert args[app + 1:] == ["--conf", "/conf/x.yaml", "--until-idle"]


def test_submit_argv_passes_java_options_to_driver_and_executors() -> None:
    confs = option(argv(java_options="-XX:+UseSerialGC"), "--conf")
    assert ("spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=file:"
            "/p/log4j2.properties -XX:+UseSerialGC") in confs
    assert "spark.executor.extraJavaOptions=-XX:+UseSerialGC" in confs
    assert not any(c.startswith("spark.executor.extraJavaOptions") for c in option(argv(), "--conf"))


def test_submit_argv_without_until_idle_runs_continuously() -> None:
    args = argv(until_idle=False)
    assert args[-2:] == ["--conf", "/conf/x.yaml"]


def test_submit_argv_rejects_an_unknown_layer() -> None:
    with pytest.raises(LakehouseError) as err:
        argv("platinum")
    assert err.value.code == ErrorCode.BAD_ARGUMENTS


def test_py_files_zip_holds_the_packages_without_bytecode(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    for name in ("lakehouse/__init__.py", "lakehouse/log4j2.properties", "lakehouse/io/x.py",
                 "lakehouse/__pycache__/x.cpython-311.pyc", "bronze/orders.py",
                 "tests/test_x.py", "notes.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("# x\n")
    dest = build_py_files(tmp_path / "out" / "py.zip", root, ("lakehouse", "bronze"))
    with zipfile.ZipFile(dest) as zf:
        assert sorted(zf.namelist()) == ["bronze/orders.py", "lakehouse/__init__.py",
                                         "lakehouse/io/x.py", "lakehouse/log4j2.properties"]
    assert not (tmp_path / "out" / "py.zip.partial").exists()


def test_py_files_zip_of_the_project_has_every_job_entry_point(tmp_path: Path) -> None:
    with zipfile.ZipFile(build_py_files(tmp_path / "py.zip")) as zf:
        names = set(zf.namelist())
    for layer in ("bronze", "silver", "gold"):
        assert f"pipelines/{layer}_job.py" in names
    assert {"lakehouse/__init__.py", "lakehouse/log4j2.properties", "pipelines/_job.py",
            "bronze/__init__.py", "silver/__init__.py", "lakehouse/landing.py",
            "gold/orders.py"} <= names
    assert {n.split("/")[0] for n in names} == set(PY_PACKAGES)


def test_a_job_importing_the_project_from_a_zip_finds_the_expectations_from_its_cwd(
        tmp_path: Path) -> None:
    zipped = tmp_path / "lakehouse-py.zip"
    zipped.write_bytes(b"PK")  # a file, not a folder
    assert default_expectations_dir(zipped / "lakehouse" / "config.py", ROOT) == \
        ROOT / "expectations"
    assert default_expectations_dir(ROOT / "lakehouse" / "config.py", tmp_path) == \
        ROOT / "expectations"


def test_status_is_healthy_only_with_every_worker_alive() -> None:
    alive = WorkerStatus("w1", "127.0.0.1", 1, "ALIVE", 1, 1024)
    dead = WorkerStatus("w2", "127.0.0.1", 2, "DEAD", 1, 1024)
    up = ClusterStatus(True, "spark://127.0.0.1:7077", "http://127.0.0.1:8080", "/d", 2,
                       master_pid=10, workers=(alive, dead))
    assert up.alive_workers == 1 and not up.healthy
    assert "1/2 workers ALIVE" in up.describe() and "spark://127.0.0.1:7077" in up.describe()
    full = ClusterStatus(True, up.master_url, up.web_ui, "/d", 2, master_pid=10,
                         workers=(alive, alive))
    assert full.healthy
    assert not ClusterStatus(False, "", "", "/d", 2).healthy


def test_a_cluster_never_started_is_not_running(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cluster")
    status = cluster.status()
    assert not status.running and status.master_url == ""
    assert "not running" in status.describe()
    assert cluster.down() is False


def test_a_cluster_needs_a_worker(tmp_path: Path) -> None:
    with pytest.raises(LakehouseError) as err:
        LocalCluster(tmp_path, workers=0)
    assert err.value.code == ErrorCode.BAD_ARGUMENTS


def test_master_state_is_none_when_nothing_answers() -> None:
    assert master_state(f"http://127.0.0.1:{free_port()}", timeout=0.5) is None


@pytest.mark.parametrize(("args", "code"), [
    (["submit"], "LH-CLUSTER-002"),                 # no cluster runs for the warehouse
    (["submit", "platinum"], "LH-CLI-001"),
    (["up", "silver"], "LH-CLI-001"),                # layers go with submit
    (["status", "--master", "spark://h:7077"], "LH-CLI-001"),
])
def test_cluster_command_errors_name_their_code(tmp_path: Path, args: list[str], code: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from lakehouse.cli import main
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump({"project": "t", "kafka": {"bootstrap_servers": "127.0.0.1:1"},
                                    "warehouse": {"root": str(tmp_path / "wh")}}))
    assert main(["--conf", str(conf), "cluster", *args]) == 2
    assert f"[{code}]" in capsys.readouterr().err


def test_cluster_status_of_a_warehouse_without_one_exits_3(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lakehouse.cli import main
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump({"project": "t", "kafka": {"bootstrap_servers": "127.0.0.1:1"},
                                    "warehouse": {"root": str(tmp_path / "wh")}}))
    assert main(["--conf", str(conf), "cluster", "status"]) == 3
    assert "cluster not running" in capsys.readouterr().out
