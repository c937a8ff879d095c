"""The SparkSession every job uses, sized for this project's defaults."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Protocol

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse.config import Config
from lakehouse.io.delta import AppIdBinding
from lakehouse.lineage.datasets import BatchIO, BatchRun
from lakehouse.lineage.tracking import QueryLineage

LOG4J_CONF = Path(__file__).with_name("log4j2.properties")


def build_session(config: Config) -> SparkSession:
    """Create (or reuse, e.g. under spark-submit) the session and register our sources.

    The master and app name from config apply only when no session exists yet; a job
    submitted to a cluster keeps what spark-submit set.
    """
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
        .config("spark.driver.extraJavaOptions",
                f"-Dlog4j2.configurationFile=file:{LOG4J_CONF}")
    )
    if not SparkSession.getActiveSession() and "spark.master" not in _submitted_conf():
        builder = builder.master(config.spark.master)
    for key, value in config.spark.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    register_sources(spark)
    return spark


def register_sources(spark: SparkSession) -> None:
    """Make the project's Python data sources available as formats."""
    from lakehouse.io.delta_source import DeltaDataSource
    from lakehouse.io.kafka_source import KafkaDataSource
    spark.dataSource.register(KafkaDataSource)
    spark.dataSource.register(DeltaDataSource)


def _submitted_conf() -> set[str]:
    """Spark settings given by spark-submit (visible to the driver as an env variable)."""
    args = os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    return {"spark.master"} if "--master" in args else set()


class BatchWriter(Protocol):
    """The work of one micro-batch: commit it, and say what it read and wrote."""

    def __call__(self, df: DataFrame, batch_id: int, run: BatchRun) -> BatchIO: ...


def start_batches(df: DataFrame, config: Config, name: str, writer: BatchWriter,
                  binding: AppIdBinding, lineage: QueryLineage) -> StreamingQuery:
    """Start ``df`` as the streaming query ``name``: every micro-batch goes to ``writer``
    (foreachBatch), checkpointed under the query's name, on the configured trigger. The
    writers in ``binding`` then commit under ``<name>:<checkpoint's query id>``.

    Each micro-batch is a lineage run whose parent is the query's run: START before the
    writer runs, then COMPLETE with what it read and wrote, or FAIL with its error. The
    batch's run ids go into its commits (``BatchRun.commit_metadata``).
    """
    def each(batch: DataFrame, batch_id: int) -> None:
        binding.wait()
        run = lineage.batch_started(batch_id)
        try:
            io = writer(batch, batch_id, run)
        except BaseException as exc:
            lineage.batch_failed(run, exc)
            raise
        lineage.batch_completed(run, io)

    query = (df.writeStream.queryName(name).foreachBatch(each)
             .option("checkpointLocation", config.warehouse.checkpoint_uri(name))
             .trigger(processingTime=f"{config.streaming.trigger_seconds} seconds")
             .start())
    app_id = f"{name}:{query.id}"
    lineage.started(str(query.runId), app_id)
    binding.bind(app_id)
    return query
