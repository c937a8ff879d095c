"""The SparkSession every job uses: Delta Lake and Spark's Kafka connector on the class
path (the jars ``make setup`` fetched), sized for this project's defaults."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.object_store import bucket_of
from lakehouse.jvm import JarSet, jars
from lakehouse.lineage.listener import session_conf
from lakehouse.lineage.tracking import new_run_id

LOG4J_CONF = Path(__file__).with_name("log4j2.properties")


DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Every table the pipelines create stays readable by delta-rs and DuckDB (the JVM-free
    # readers of `lakehouse query`, history, diff and explain): no deletion vectors.
    "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
    # Timestamps as Parquet INT64 microseconds (not legacy INT96), as those readers expect.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}
CODEGEN_CACHE = 2000
"""Generated classes the driver keeps (Spark's default: 100)."""


def build_session(config: Config, streaming: bool = False) -> SparkSession:
    """Create (or reuse, e.g. under spark-submit) the session.

    The master, app name and jars from config apply only when no session exists yet; a
    job submitted to a cluster keeps what spark-submit set (``--jars`` there). The
    OpenLineage listener is configured from ``lineage:`` (``lakehouse.lineage.listener``);
    a ``streaming`` session's column lineage comes from the project, not the listener.
    A warehouse at ``s3a://bucket/...`` is reached through Hadoop's S3A connector with the
    ``storage:`` section's endpoint and key, set for that bucket only (Spark redacts the
    key in its UI and logs). Delta writes there with its default S3 log store: one
    driver writes each table (this project runs one job per table or per source).
    Whether this process links its commits in their tables' chains is
    ``retention.tamper_evidence`` (``lakehouse.io.chain``).
    """
    from lakehouse.io import chain
    chain.enable(config.retention.tamper_evidence)
    # Python workers must run the interpreter that has this project installed.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(config.spark.app_name)
        .config("spark.sql.shuffle.partitions", str(config.spark.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.streaming.noDataProgressEventInterval", "5000")
        # Every Python source and foreachBatch query starts Python processes on the
        # driver; on a busy 2-core machine they can take longer than the 15 s default
        # to connect back, which fails the query.
        .config("spark.python.authenticate.socketTimeout", "120s")
        # A stop waits this long at most for a query's thread, which a Kafka call to a
        # broker that went away can hold; what that query had not committed runs again
        # on the next start.
        .config("spark.sql.streaming.stopTimeout", "60s")
        # Kafka credentials travel as source options (kafka.sasl.jaas.config): keep them
        # out of plan strings, logs and lineage, as Spark does with a URL by default.
        .config("spark.sql.redaction.options.regex", "(?i)url|jaas|password|secret|token")
    )
    for key, value in DELTA_CONF.items():
        builder = builder.config(key, value)
    # Delta rebuilds a table's state with 50 tasks by default: far too many on 2 cores.
    builder = builder.config("spark.databricks.delta.snapshotPartitions",
                             str(config.spark.shuffle_partitions))
    # Every micro-batch plans the same few dozen queries again, Delta's log reads among
    # them, whose projections over its wide action schema compile to large classes. With
    # Spark's default of 100 cached classes they were compiled anew each batch (a JFR
    # profile of the steady load: a third of the driver JVM's CPU in code generation).
    builder = builder.config("spark.sql.codegen.cache.maxEntries", str(CODEGEN_CACHE))
    if not SparkSession.getActiveSession() and not _submitted():
        builder = (builder.master(config.spark.master)
                   .config("spark.driver.memory", config.spark.driver_memory)
                   .config("spark.driver.extraJavaOptions",
                           f"-Dlog4j2.configurationFile=file:{LOG4J_CONF} "
                           f"{config.spark.driver_java_options}".strip())
                   .config("spark.jars", ",".join(str(j) for j in jars(JarSet.SPARK))))
    for key, value in {**session_conf(config, new_run_id(), streaming),
                       **object_store_conf(config), **config.spark.conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def object_store_conf(config: Config) -> dict[str, str]:
    """The session's Hadoop S3A settings (``spark.hadoop.*``) for a warehouse on the
    object store, for its bucket only; none for a local one."""
    bucket = bucket_of(config.warehouse.root)
    if bucket is None:
        return {}
    return {f"spark.hadoop.{k}": v for k, v in config.storage.store.hadoop_conf(bucket).items()}


def stop_session(spark: SparkSession, drain_seconds: float = 120.0) -> None:
    """Stop the session once its listeners have handled every event so far.

    OpenLineage's listener runs Spark jobs of its own while it handles an event (Delta
    lists a table's files for it); ``SparkContext.stop`` waits for the listener and the
    listener's job waits for the stopping scheduler, forever. Draining the listener bus
    first (bounded: a listener that takes longer only delays the stop) closes that race.
    """
    with contextlib.suppress(Exception):  # a listener still busy: stop anyway
        spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty(  # type: ignore[union-attr]
            int(drain_seconds * 1000))
    spark.stop()


def driver_jvm_exited(wait: float = 0.0) -> LakehouseError | None:
    """The error to report if the Spark driver JVM this process launched has exited
    (py4j then fails every call with a connection error that hides why), else None.
    ``wait``: give a JVM that is going this long to finish exiting (a killed JVM closes its
    sockets before it has exited, so a call can fail before ``poll`` sees the exit)."""
    from pyspark import SparkContext
    proc = getattr(SparkContext._gateway, "proc", None)
    if proc is None:
        return None
    try:
        code = proc.wait(timeout=wait) if wait else proc.poll()
    except subprocess.TimeoutExpired:
        code = None
    if code is None:
        return None
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    hint = ("SIGKILL comes from the OS (out of memory?) or a person: check the machine's "
            "memory and spark.driver_memory" if code == -9 else
            "the JVM's own output above says why (an OutOfMemoryError: raise "
            "spark.driver_memory)")
    return LakehouseError(ErrorCode.DRIVER_JVM_EXITED, f"the Spark driver JVM {how}",
                          hint=f"{hint}; what was committed stands, and the next run "
                               "resumes exactly once from there")


def _submitted() -> bool:
    """Whether spark-submit started this driver (it then owns the master and the jars):
    it launches the JVM first and hands pyspark the gateway's port."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or "--master" in os.environ.get(
        "PYSPARK_SUBMIT_ARGS", "")
