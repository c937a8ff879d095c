"""OpenLineage run events of streaming queries and their micro-batches (pure builders).

They carry what the Spark listener cannot know about a foreachBatch query (OpenLineage
#3398, #1581); schemas, the Spark version and the environment come from the listener.
A streaming query is one run of job ``<layer>.<table>`` (START when it starts, COMPLETE
when it stops cleanly, FAIL with the error), whose parent is the listener's application
run. Each micro-batch is one run of job ``<layer>.<table>.batch`` whose ``parent`` facet
names the query's run and whose root is the application's root.

Facets, all from the ``openlineage-python`` client: ``jobType``, ``parent``,
``errorMessage``; on a batch's datasets ``version`` (the Delta version read or written),
``outputStatistics`` (rows, bytes, files of the commit) and ``dataQualityAssertions``
(the silver suite's results on the batch it validated); on a query run's START
``columnLineage`` (derived from the query's own definition) with the ``schema`` of the
datasets it names (a lineage server attaches column lineage to known fields only). Two
project facets say exactly what was read: ``lakehouse_versionRange`` (Delta versions)
and ``lakehouse_kafkaOffsets``.
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
    schema_dataset,
)
from pyspark.sql.pandas.types import from_arrow_type

from lakehouse.batch import Assertion, DatasetName
from lakehouse.lineage.columns import ColumnLineage
from lakehouse.lineage.listener import RunRef

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
class CommitStats:
    """The Delta version a micro-batch committed to a table, and its size."""

    version: int
    rows: int
    bytes: int | None = None
    files: int | None = None


def job(namespace: str, name: str, micro_batch: bool) -> Job:
    """A query's job, or the job of its micro-batches."""
    kind = job_type_job.JobTypeJobFacet(processingType="STREAMING", integration="SPARK",
                                        jobType="MICRO_BATCH" if micro_batch else "STREAMING_QUERY",
                                        producer=PRODUCER)
    return Job(namespace=namespace, name=name + (BATCH_SUFFIX if micro_batch else ""),
               facets={"jobType": kind})


def schema_facet(schema: pa.Schema) -> schema_dataset.SchemaDatasetFacet:
    """A Delta table's (Arrow) schema as the Spark listener writes it: Spark's type names
    (``long``, ``decimal(12,2)``, ``array`` with an ``_element`` child, ...), so a lineage
    server sees one field per column whichever producer named it."""
    return schema_dataset.SchemaDatasetFacet(fields=[_field(f.name, f.type) for f in schema],
                                             producer=PRODUCER)


def _field(name: str, t: pa.DataType) -> schema_dataset.SchemaDatasetFacetFields:
    children: list[tuple[str, pa.DataType]] = []
    if pa.types.is_struct(t):
        children = [(t.field(i).name, t.field(i).type) for i in range(t.num_fields)]
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        children = [("_element", t.value_type)]
    elif pa.types.is_map(t):
        children = [("key", t.key_type), ("value", t.item_type)]
    return schema_dataset.SchemaDatasetFacetFields(
        name=name, type=_spark_type_name(t), fields=[_field(n, c) for n, c in children])


def _spark_type_name(t: pa.DataType) -> str:
    try:
        spark_type = from_arrow_type(t)
    except TypeError:  # a type Spark has no name for
        return str(t)
    value = spark_type.jsonValue()
    return value if isinstance(value, str) else spark_type.typeName()


def column_lineage_facet(lineage: ColumnLineage, source: DatasetName
                         ) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    """The plan-derived lineage of an output's columns from ``source``'s columns: each output
    column's DIRECT inputs (one that takes none, e.g. ``count(*)``, depends on the
    dataset-wide INDIRECT ones only)."""
    def field(column: str, kind: str, subtype: str) -> column_lineage_dataset.InputField:
        return column_lineage_dataset.InputField(
            namespace=source.namespace, name=source.name, field=column,
            transformations=[column_lineage_dataset.Transformation(type=kind, subtype=subtype)])

    return column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={out: column_lineage_dataset.Fields(
            inputFields=[field(c, "DIRECT", s) for c, s in sorted(src.items())])
            for out, src in lineage.fields.items() if src},
        dataset=[field(c, "INDIRECT", s) for c, subtypes in sorted(lineage.indirect.items())
                 for s in sorted(subtypes)], producer=PRODUCER)


def input_dataset(name: DatasetName, versions: tuple[int, int] | None = None,
                  offsets: Sequence[Mapping[str, Any]] = (),
                  assertions: Sequence[Assertion] = (),
                  schema: pa.Schema | None = None) -> InputDataset:
    """An input with exactly what of it was read, and the assertions checked on it."""
    facets: dict[str, DatasetFacet] = {}
    input_facets: dict[str, InputDatasetFacet] = {}
    if schema is not None:
        facets["schema"] = schema_facet(schema)
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


def output_dataset(name: DatasetName, stats: CommitStats | None = None,
                   columns: ColumnLineage | None = None, source: DatasetName | None = None,
                   schema: pa.Schema | None = None) -> OutputDataset:
    """An output with the version written, its statistics, or its column lineage (with
    the schema a lineage server needs to attach column lineage to fields)."""
    facets: dict[str, DatasetFacet] = {}
    output_facets: dict[str, Any] = {}
    if schema is not None:
        facets["schema"] = schema_facet(schema)
    if stats is not None:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=str(stats.version), producer=PRODUCER)
        output_facets["outputStatistics"] = \
            output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=stats.rows, size=stats.bytes, fileCount=stats.files,
                producer=PRODUCER)
    if columns is not None and source is not None:
        facets["columnLineage"] = column_lineage_facet(columns, source)
    return OutputDataset(namespace=name.namespace, name=name.name, facets=facets,
                         outputFacets=output_facets)


def error_facet(message: str, stack: str | None) -> error_message_run.ErrorMessageRunFacet:
    """The error a run failed with."""
    return error_message_run.ErrorMessageRunFacet(message=message, programmingLanguage="python",
                                                  stackTrace=stack, producer=PRODUCER)


def parent_facet(parent: RunRef, root: RunRef) -> parent_run.ParentRunFacet:
    """Names a run's parent run and the root of its tree."""
    return parent_run.ParentRunFacet(
        run=parent_run.Run(runId=parent.run_id),
        job=parent_run.Job(namespace=parent.namespace, name=parent.job),
        root=parent_run.Root(run=parent_run.RootRun(runId=root.run_id),
                             job=parent_run.RootJob(namespace=root.namespace, name=root.job)),
        producer=PRODUCER)


def run_event(state: RunState, job_: Job, run_id: str, facets: Mapping[str, RunFacet],
              inputs: Sequence[InputDataset] = (),
              outputs: Sequence[OutputDataset] = ()) -> RunEvent:
    """One OpenLineage run event."""
    return RunEvent(eventType=state, eventTime=datetime.now(UTC).isoformat(), producer=PRODUCER,
                    run=Run(runId=run_id, facets=dict(facets)), job=job_,
                    inputs=list(inputs), outputs=list(outputs))
