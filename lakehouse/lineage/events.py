"""OpenLineage run events of streaming queries and their micro-batches (pure builders).

A streaming query is one run of job ``<layer>.<table>`` (START when it starts, COMPLETE
when it stops cleanly, FAIL with the error). Each micro-batch is one run of job
``<layer>.<table>.batch`` whose ``parent`` facet names the query's run, so a lineage
server shows the batches under the query instead of as disconnected runs.

Facets, all from the ``openlineage-python`` client: ``jobType``, ``processing_engine``,
``parent``, ``errorMessage``; on datasets ``schema``, ``version`` (the Delta version read
or written), ``outputStatistics`` (rows, bytes, files of the commit),
``dataQualityAssertions`` (the silver suite's results on the batch it validated) and
``columnLineage`` (derived from the Spark plan). Two project facets say exactly what was
read: ``lakehouse_versionRange`` (Delta versions) and ``lakehouse_kafkaOffsets``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import attr
import pyarrow as pa
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    DatasetFacet,
    InputDatasetFacet,
    RunFacet,
    column_lineage_dataset,
    data_quality_assertions_dataset,
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
)

from lakehouse.lineage.columns import ColumnLineage
from lakehouse.lineage.datasets import Assertion, DatasetName, column_lineage_fields

PRODUCER = "https://github.com/lakehouse-project/lakehouse"
FACETS_URL = f"{PRODUCER}/blob/main/docs/lineage-facets.md"
BATCH_SUFFIX = ".batch"


@attr.define
class VersionRangeInputFacet(InputDatasetFacet):
    """The Delta versions a micro-batch read (both ends included)."""

    fromVersion: int
    toVersion: int

    @staticmethod
    def _get_schema() -> str:
        return f"{FACETS_URL}#versionrange"


@attr.define
class KafkaOffsetsInputFacet(InputDatasetFacet):
    """The Kafka offsets a micro-batch read: ``{partition, from, to}`` with ``to``
    exclusive, per partition."""

    ranges: list[dict[str, int]]

    @staticmethod
    def _get_schema() -> str:
        return f"{FACETS_URL}#kafkaoffsets"


@attr.define
class BatchRunFacet(RunFacet):
    """Which micro-batch of which query this run is (``appId`` is the Delta transaction
    app id its commits carry)."""

    batchId: int
    query: str
    appId: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return f"{FACETS_URL}#batch"


@dataclass(frozen=True)
class TableFacts:
    """What the lineage worker found out about a Delta table version."""

    schema: pa.Schema | None
    version: int | None
    rows: int | None = None
    bytes: int | None = None
    files: int | None = None


def now_iso() -> str:
    """An event time: ISO-8601 in UTC, with time."""
    return datetime.now(UTC).isoformat()


def job(namespace: str, name: str, micro_batch: bool) -> Job:
    """A query's job, or the job of its micro-batches."""
    kind = job_type_job.JobTypeJobFacet(processingType="STREAMING", integration="SPARK",
                                        jobType="MICRO_BATCH" if micro_batch else "STREAMING_QUERY",
                                        producer=PRODUCER)
    return Job(namespace=namespace, name=name + (BATCH_SUFFIX if micro_batch else ""),
               facets={"jobType": kind})


def schema_facet(schema: pa.Schema) -> schema_dataset.SchemaDatasetFacet:
    """Arrow schema -> OpenLineage schema facet (nested structs and lists included)."""
    return schema_dataset.SchemaDatasetFacet(fields=[_field(f) for f in schema],
                                             producer=PRODUCER)


def _field(f: pa.Field) -> schema_dataset.SchemaDatasetFacetFields:
    t = f.type
    children: list[pa.Field] = []
    if pa.types.is_struct(t):
        children = [t.field(i) for i in range(t.num_fields)]
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        children = [t.value_field]
    elif pa.types.is_map(t):
        children = [t.key_field, t.item_field]
    return schema_dataset.SchemaDatasetFacetFields(
        name=f.name, type=_type_name(t), fields=[_field(c) for c in children])


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_struct(t):
        return "struct"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list"
    if pa.types.is_map(t):
        return "map"
    return str(t)


def column_lineage_facet(lineage: ColumnLineage, source: DatasetName
                         ) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    """The plan-derived lineage of an output's columns from ``source``'s columns."""
    fields, dataset = column_lineage_fields(lineage)

    def field(column: str, kind: str, subtype: str) -> column_lineage_dataset.InputField:
        return column_lineage_dataset.InputField(
            namespace=source.namespace, name=source.name, field=column,
            transformations=[column_lineage_dataset.Transformation(type=kind, subtype=subtype)])

    return column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={out: column_lineage_dataset.Fields(
            inputFields=[field(c, k, s) for c, k, s in sources]) for out, sources in fields.items()},
        dataset=[field(c, "INDIRECT", s) for c, s in dataset], producer=PRODUCER)


def input_dataset(name: DatasetName, facts: TableFacts | None = None,
                  versions: tuple[int, int] | None = None,
                  offsets: Sequence[Mapping[str, Any]] = (),
                  assertions: Sequence[Assertion] = ()) -> InputDataset:
    """An input with what is known of it: schema, version read, ranges, assertions."""
    facets: dict[str, DatasetFacet] = {}
    input_facets: dict[str, InputDatasetFacet] = {}
    if facts is not None and facts.schema is not None:
        facets["schema"] = schema_facet(facts.schema)
    if versions is not None:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=str(versions[1]), producer=PRODUCER)
        input_facets["lakehouse_versionRange"] = VersionRangeInputFacet(
            fromVersion=versions[0], toVersion=versions[1], producer=PRODUCER)
    if offsets:
        input_facets["lakehouse_kafkaOffsets"] = KafkaOffsetsInputFacet(
            ranges=[{"partition": int(r["partition"]), "from": int(r["from"]),
                     "to": int(r["to"])} for r in offsets], producer=PRODUCER)
    if assertions:
        input_facets["dataQualityAssertions"] = \
            data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
                assertions=[data_quality_assertions_dataset.Assertion(
                    assertion=a.rule, success=a.success, column=a.column, severity=a.severity)
                    for a in assertions], producer=PRODUCER)
    return InputDataset(namespace=name.namespace, name=name.name, facets=facets,
                        inputFacets=input_facets)


def output_dataset(name: DatasetName, facts: TableFacts | None = None,
                   columns: ColumnLineage | None = None,
                   source: DatasetName | None = None) -> OutputDataset:
    """An output with its schema, the version written, its statistics and column lineage."""
    facets: dict[str, DatasetFacet] = {}
    output_facets: dict[str, Any] = {}
    if facts is not None:
        if facts.schema is not None:
            facets["schema"] = schema_facet(facts.schema)
        if facts.version is not None:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=str(facts.version), producer=PRODUCER)
        if facts.rows is not None:
            output_facets["outputStatistics"] = \
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=facts.rows, size=facts.bytes, fileCount=facts.files,
                    producer=PRODUCER)
    if columns is not None and source is not None:
        facets["columnLineage"] = column_lineage_facet(columns, source)
    return OutputDataset(namespace=name.namespace, name=name.name, facets=facets,
                         outputFacets=output_facets)


def engine_facet(spark_version: str, adapter_version: str
                 ) -> processing_engine_run.ProcessingEngineRunFacet:
    """Spark's version and this project's (the "adapter")."""
    return processing_engine_run.ProcessingEngineRunFacet(
        version=spark_version, name="spark", openlineageAdapterVersion=adapter_version,
        producer=PRODUCER)


def error_facet(message: str, stack: str | None) -> error_message_run.ErrorMessageRunFacet:
    """The error a run failed with."""
    return error_message_run.ErrorMessageRunFacet(message=message, programmingLanguage="python",
                                                  stackTrace=stack, producer=PRODUCER)


def parent_facet(namespace: str, query: str, query_run_id: str) -> parent_run.ParentRunFacet:
    """Names the streaming query's run as the parent (and root) of a micro-batch run."""
    return parent_run.ParentRunFacet(
        run=parent_run.Run(runId=query_run_id),
        job=parent_run.Job(namespace=namespace, name=query),
        root=parent_run.Root(run=parent_run.RootRun(runId=query_run_id),
                             job=parent_run.RootJob(namespace=namespace, name=query)),
        producer=PRODUCER)


def run_event(state: RunState, job_: Job, run_id: str, facets: Mapping[str, RunFacet],
              inputs: Sequence[InputDataset] = (),
              outputs: Sequence[OutputDataset] = ()) -> RunEvent:
    """One OpenLineage run event."""
    return RunEvent(eventType=state, eventTime=now_iso(), producer=PRODUCER,
                    run=Run(runId=run_id, facets=dict(facets)), job=job_,
                    inputs=list(inputs), outputs=list(outputs))
