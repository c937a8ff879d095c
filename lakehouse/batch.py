"""The batch protocol: what one micro-batch (or one command's run) reads and writes, the
ids it commits under, and the commit-metadata keys that say what each commit was built
from (pure). The writers return it, and lineage and the event log both read it.

Dataset naming follows the OpenLineage naming spec: a Kafka topic is
(``kafka://<first bootstrap host:port>``, ``<topic>``); a Delta table is named by its
storage URI: (``file``, ``/abs/path``) on local disk, (``s3://bucket``, ``key/path``)
on an object store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from lakehouse.io.delta_log import BatchCommit

# Commit metadata keys: who wrote a commit and exactly what it was built from.
RUN_ID = "lakehouse.run_id"
QUERY_RUN_ID = "lakehouse.query_run_id"
KAFKA_OFFSETS = "lakehouse.kafka_offsets"
"""Bronze: the Kafka offset ranges a commit holds."""
BRONZE_VERSIONS = "lakehouse.bronze_versions"
"""Silver: the bronze versions a commit was built from."""
SILVER_VERSIONS = "lakehouse.silver_versions"
"""Gold: the silver versions a commit was built from."""


@dataclass(frozen=True)
class EventTimes:
    """The Kafka timestamps (epoch ms) of one batch's records: the oldest, the 1st, 5th
    and 50th percentiles, and the newest."""

    oldest: float
    p01: float
    p05: float
    p50: float
    newest: float

    def latencies(self, committed_ms: float) -> dict[str, float]:
        """Event -> commit latency percentiles (pure): the p95 latency is the 5th
        percentile of event times, the oldest 5% waited at least that long."""
        return {"latency_p50_ms": committed_ms - self.p50,
                "latency_p95_ms": committed_ms - self.p05,
                "latency_p99_ms": committed_ms - self.p01,
                "latency_max_ms": committed_ms - self.oldest}


@dataclass(frozen=True, order=True)
class DatasetName:
    """An OpenLineage dataset identity."""

    namespace: str
    name: str

    def __str__(self) -> str:
        sep = "" if self.namespace.endswith("/") else "/" if "://" in self.namespace else ":"
        return f"{self.namespace}{sep}{self.name}"


def kafka_dataset(bootstrap_servers: str, topic: str) -> DatasetName:
    """A Kafka topic: namespace ``kafka://host:port`` (the first bootstrap server)."""
    first = bootstrap_servers.split(",")[0].strip()
    return DatasetName(f"kafka://{first}", topic)


def storage_dataset(uri: str) -> DatasetName:
    """A table by its storage location."""
    if "://" not in uri:
        return DatasetName("file", uri)
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return DatasetName("file", parts.path)
    return DatasetName(f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/"))


@dataclass(frozen=True)
class BatchRun:
    """The ids of one micro-batch run, recorded in every commit it makes."""

    run_id: str
    query_run_id: str
    batch_id: int
    app_id: str
    """The Delta transaction app id of the query's writes (``<query>:<query id>``)."""

    def commit_metadata(self) -> dict[str, str]:
        """What each Delta commit of this batch carries (with its input ranges)."""
        return {RUN_ID: self.run_id, QUERY_RUN_ID: self.query_run_id}

    def commit(self, **metadata: Any) -> BatchCommit:
        """This batch's Delta commit identity, recording ``metadata`` and the run ids."""
        return BatchCommit(self.app_id, self.batch_id, {**metadata, **self.commit_metadata()})


@dataclass(frozen=True)
class Assertion:
    """One data-quality check on a batch (a silver suite expectation)."""

    rule: str
    success: bool
    column: str | None
    severity: str


@dataclass(frozen=True)
class Read:
    """A dataset one micro-batch read, and exactly what of it."""

    dataset: DatasetName
    rows: int
    versions: tuple[int, int] | None = None
    """Delta versions read (first, last)."""
    offsets: Sequence[Mapping[str, Any]] = ()
    """Kafka offset ranges read: ``{topic, partition, from, to}`` (``to`` exclusive)."""
    assertions: Sequence[Assertion] = ()


@dataclass(frozen=True)
class Written:
    """A Delta table one micro-batch committed to."""

    uri: str
    version: int | None
    """None when the batch wrote nothing (empty, or a replay already committed)."""
    rows: int


@dataclass(frozen=True)
class BatchIO:
    """Everything one micro-batch read and wrote (and, for the event log, what it
    dropped and how old its records were)."""

    reads: Sequence[Read]
    writes: Sequence[Written] = ()
    quarantined: int = 0
    duplicates: int = 0
    event_times: EventTimes | None = None
    """The Kafka timestamps of the records it committed (None where the writer does not
    aggregate its batch: bronze's append is its one job)."""


@dataclass(frozen=True)
class QuerySpec:
    """The static shape of one streaming query: the dataset it reads, the tables it
    writes, and the DataFrames whose plans give each output's column lineage."""

    name: str
    input: DatasetName
    input_uri: str | None
    """The input's Delta table URI (None for a Kafka topic)."""
    outputs: Sequence[str]
    """Output table URIs."""
    derivations: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    """Output URI -> a function returning the DataFrame whose logical plan computes that
    output from the input (called once, off the query's start-up path)."""
