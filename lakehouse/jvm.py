"""The JVM jars the project runs on, fetched once by the set-up, never at run time.

``jvm/spark/pom.xml`` pins what the Spark sessions load on top of the pyspark wheel
(delta-spark, Spark's Kafka connector); ``jvm/broker/pom.xml`` pins Apache Kafka for the
embedded broker. ``make setup`` copies each set into ``jvm/target/<set>`` with
``mvn dependency:copy-dependencies``. ``LAKEHOUSE_JARS`` points elsewhere (a shared
cache, an image's folder).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from lakehouse.errors import ErrorCode, LakehouseError

ENV_JARS = "LAKEHOUSE_JARS"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class JarSet(StrEnum):
    """The two sets of jars, each fetched by its own pom."""

    SPARK = "spark"
    BROKER = "broker"


def jars_root() -> Path:
    """The folder holding one sub-folder of jars per set."""
    return Path(os.environ.get(ENV_JARS) or PROJECT_ROOT / "jvm" / "target")


def jars(which: JarSet) -> list[Path]:
    """The jars of one set, sorted; a clear error naming the set-up when they are missing."""
    folder = jars_root() / which.value
    found = sorted(folder.glob("*.jar")) if folder.is_dir() else []
    if not found:
        raise LakehouseError(
            ErrorCode.JARS_MISSING, f"no {which.value} jars in {folder}",
            hint=f"run `make setup` (it runs `mvn -q -f jvm/{which.value}/pom.xml "
                 f"dependency:copy-dependencies`), or point {ENV_JARS} at a folder holding "
                 f"'{which.value}/*.jar'")
    return found


def java() -> Path:
    """The ``java`` to run the project's own JVMs with: ``$JAVA_HOME/bin/java``, else the
    one on the PATH."""
    home = os.environ.get("JAVA_HOME")
    return Path(home, "bin", "java") if home else Path("java")
