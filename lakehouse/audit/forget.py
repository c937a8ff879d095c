"""``lakehouse forget --subject ID``: erase one data subject from every table.

For each silver table whose contract marks fields ``pii: true``, in this order:

1. bronze: the raw records whose pii field holds the subject's id;
2. the quarantine: the same, open ones and those a replay resolved, one commit each;
3. silver: the rows holding the subject's pseudonym;
4. a ledger line (``kind = forget``) with the negative counts, so the accounting identity
   bronze = silver + quarantined + duplicates still holds;
5. silver's checkpoint is moved aside (its next run resumes after the bronze version of
   the erasure, from the ledger), and every gold table reading it is recomputed from silver
   (``replay_gold``), which replaces its checkpoint too;
6. every table touched is vacuumed with retention 0: the files of earlier versions, the
   only place the subject still was, are deleted, so time travel to those versions ends;
7. one row per table in ``_system/forgotten``: when, by whom, the pseudonym, rows erased.

Each erasure is a MERGE with the subject in a one-row source and ``WHEN MATCHED THEN
DELETE``, so neither the id nor its pseudonym is written into a commit's predicate; every
commit is batch ``n`` of the app id ``forget:<pseudonym prefix>:<part>``: a forget that died half way
is finished by running it again, and the ledger counts each row once. It runs with
lineage off (the plans name the subject) and refuses while silver has bronze records it
has not routed (LH-FORGET-001): the counts would not add up.
"""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse import graph
from lakehouse.config import Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.checkpoints import move_aside
from lakehouse.io.delta import append_rows, arrow_schema, ensure_table, merge
from lakehouse.io.delta_log import BatchCommit, WriteResult, committed, last_batch, latest_version, open_table
from lakehouse.io.locks import table_locks
from lakehouse.layers.ledger import BatchReport, LedgerKind, accounting
from lakehouse.layers.routing import SilverPlan, load_plan
from lakehouse.layers.silver import Change, commit_change, next_batch
from lakehouse.printing import Printer
from lakehouse.privacy import pseudonym
from lakehouse.quality.avro import avro_string
from lakehouse.registry import GoldTable, SilverTable

AUDIT_SCHEMA = T.StructType([
    T.StructField("forgotten_at", T.TimestampType()), T.StructField("by", T.StringType()),
    T.StructField("subject_pseudonym", T.StringType()), T.StructField("table", T.StringType()),
    T.StructField("rows", T.LongType())])


@dataclass(frozen=True)
class Forgotten:
    """What one ``forget`` did."""

    pseudonym: str
    rows: dict[str, int]
    """Table -> rows erased."""
    recomputed: list[str]
    vacuumed: dict[str, int]
    """Table -> files deleted."""
    seconds: float

    def describe(self) -> str:
        """The outcome, a few lines for the terminal."""
        lines = [f"forgot the subject with pseudonym {self.pseudonym[:16]}... in "
                 f"{self.seconds:.1f}s"]
        lines += [f"  {table}: {n:,} rows erased" for table, n in self.rows.items()]
        lines += [f"  {table}: recomputed from silver" for table in self.recomputed]
        lines += [f"  {table}: {n:,} files of earlier versions deleted"
                  for table, n in self.vacuumed.items()]
        return "\n".join(lines)


def subject_tables(pipeline: graph.Graph) -> list[tuple[SilverTable, list[GoldTable]]]:
    """The silver tables holding personal data, each with the gold tables reading it."""
    out = []
    for q in pipeline.layer(graph.Layer.SILVER):
        table = q.definition
        if isinstance(table, SilverTable) and load_plan(pipeline, table).contract.pii_fields:
            out.append((table, [d.definition for d in pipeline.downstream(q.name)
                                if isinstance(d.definition, GoldTable)]))
    return out


def touched(tables: list[tuple[SilverTable, list[GoldTable]]]) -> list[str]:
    """Every table ``forget`` erases from, recomputes or vacuums (qualified names), given
    ``subject_tables``."""
    names = []
    for silver, golds in tables:
        names += [f"bronze.{silver.bronze}", silver.qualified_name,
                  f"silver.{silver.quarantine_name}"]
        for gold in golds:
            names += [gold.qualified_name] + ([f"gold.{gold.state_name}"]
                                              if gold.state_name else [])
    return names


def _any(conditions: list[Column]) -> Column:
    """True where one of ``conditions`` is (a null counts as false)."""
    return F.greatest(*[F.coalesce(c, F.lit(False)) for c in conditions], F.lit(False))


def in_raw(plan: SilverPlan, value: Column, subject: Column, encoded: Column) -> Column:
    """Whether a raw record (its value bytes) names the subject. JSON: in one of its pii
    fields, or, where none of them can be read (malformed JSON, a missing field), anywhere
    as a JSON string. Avro: anywhere as an Avro string (``encoded``, its length prefix and
    bytes), readable or not, or as a JSON string (a JSON value sent to the Avro topic)."""
    text = value.cast("string")
    quoted = F.instr(text, F.concat(F.lit('"'), subject, F.lit('"'))) > 0
    if plan.avro is not None:
        return _any([value.contains(encoded), quoted])
    fields = [F.get_json_object(text, f"$.{f}") for f in plan.contract.pii_fields]
    unreadable = F.coalesce(*fields).isNull()
    return _any([f == subject for f in fields] + [unreadable & quoted])


def in_silver(plan: SilverPlan, pseudonym_col: Column) -> Column:
    """Whether a silver row (``t``) holds the subject's pseudonym in one of its pii fields."""
    return _any([F.col(f"t.{f}") == pseudonym_col for f in plan.contract.pii_fields])


def _erase(uri: str, on: Column, subject: DataFrame, commit: BatchCommit) -> WriteResult:
    """Delete the rows of ``uri`` matching ``on`` (``t`` the table, ``s`` the subject); its
    ``rows``: the rows deleted, also when an earlier try of the same forget committed it."""
    written = merge(subject, uri, on, lambda m: m.whenMatchedDelete(), commit)
    return written if written.written else committed(uri, commit)


def _forget_table(spark: SparkSession, pipeline: graph.Graph, plan: SilverPlan, subject: str,
                  printer: Printer) -> dict[str, int]:
    pseudo = pseudonym(plan.pii_key, subject)
    name = plan.table.qualified_name
    app = f"forget:{pseudo[:16]}"
    source = spark.createDataFrame([(subject, pseudo, avro_string(subject))],
                                   "subject string, pseudonym string, encoded binary")
    commit = BatchCommit(app, next_batch(plan, app),
                         {"lakehouse.query": "lakehouse forget", "lakehouse.forget": pseudo})

    def part(c: BatchCommit, name: str) -> BatchCommit:
        return BatchCommit(f"{c.app_id}:{name}", c.batch_id, c.metadata)

    raw = in_raw(plan, F.col("t.value"), F.col("s.subject"), F.col("s.encoded"))
    bronze = _erase(plan.bronze_uri, raw, source, part(commit, "bronze")).rows
    erased_at = latest_version(plan.bronze_uri) or 0
    quarantined: dict[str, int] = {}

    def quarantine(c: BatchCommit) -> WriteResult:
        for kind, which in (("open", F.col("t.resolution").isNull()),
                            ("duplicate", F.col("t.resolution") == "duplicate"),
                            ("resolved", F.lit(True))):
            quarantined[kind] = _erase(plan.quarantine_uri, raw & which, source,
                                       part(c, f"quarantine_{kind}")).rows
        return WriteResult(None, sum(quarantined.values()))

    def line(silver: WriteResult, _: WriteResult) -> BatchReport:
        duplicates = bronze - silver.rows - quarantined["open"] - quarantined["duplicate"]
        return BatchReport(-bronze, -silver.rows, -quarantined["open"], -duplicates, 0, None,
                           0.0)

    # Silver's commit records (as every part's does) the bronze version of the erasure, so
    # the vacuum does not keep the erased files for silver's stream (which skips it).
    report, _ = commit_change(plan, Change(
        LedgerKind.FORGET, commit, (erased_at, erased_at), line,
        lambda c: _erase(plan.uri, in_silver(plan, F.col("s.pseudonym")), source,
                         part(c, "silver")), quarantine))
    aside = move_aside(plan.checkpoint, "forget")
    if aside:
        printer(f"[{name}] checkpoint moved to {aside}: the next run resumes after bronze "
                f"version {erased_at}")
    return {f"bronze.{plan.table.bronze}": bronze, name: -report.silver_rows,
            f"silver.{plan.table.quarantine_name}": sum(quarantined.values())}


def forget(pipeline: graph.Graph, subject: str, *, printer: Printer = print,
           by: str | None = None) -> Forgotten:
    """Erase ``subject`` from every table holding personal data (see the module doc)."""
    from lakehouse.audit.replay import replay_gold
    from lakehouse.audit.retention import vacuum
    from lakehouse.spark import build_session
    config = pipeline.config
    started = time.monotonic()
    by = by or getpass.getuser()
    # Lineage off: the plans would name the subject.
    pipeline = replace(pipeline, config=replace(config, lineage=replace(config.lineage,
                                                                       enabled=False)))
    config = pipeline.config
    tables = subject_tables(pipeline)
    names = touched(tables)
    plans = [load_plan(pipeline, silver) for silver, _ in tables]
    with table_locks(config.warehouse.root, names, "lakehouse forget"):
        for silver, _ in tables:
            acc = accounting(pipeline, silver)
            if acc.ledger_bronze_rows != acc.bronze_rows:
                raise LakehouseError(
                    ErrorCode.FORGET_NOT_CAUGHT_UP,
                    f"{silver.qualified_name} has not routed "
                    f"{acc.bronze_rows - acc.ledger_bronze_rows:,} bronze records yet",
                    hint="stop the pipelines and run `lakehouse run --until-idle` first, so "
                         "every record is accounted for before and after the erasure",
                    table=silver.qualified_name)
        spark = build_session(config)
        rows: dict[str, int] = {}
        recomputed: list[str] = []
        for (_, golds), plan in zip(tables, plans, strict=True):
            rows.update(_forget_table(spark, pipeline, plan, subject, printer))
            for gold in golds:
                replay_gold(spark, pipeline, gold, printer=printer)
                recomputed.append(gold.qualified_name)
        vacuumed = {}
        for table in names:
            if open_table(config.warehouse.table_uri(*table.split(".", 1)),
                          config.warehouse.storage_options) is None:
                continue  # e.g. the state of a gold table that keeps none
            printer(f"vacuuming {table} (retention 0) ...")
            vacuumed[table] = len(vacuum(pipeline, table, 0, erasure=True, spark=spark).files)
        pseudo = pseudonym(plans[0].pii_key, subject) if plans else ""
        _audit(config, pseudo, by, rows)
    return Forgotten(pseudo, rows, recomputed, vacuumed, time.monotonic() - started)


def audit_uri(config: Config) -> str:
    """Where the erasures are recorded."""
    return config.warehouse.table_uri("_system", "forgotten")


def _audit(config: Config, pseudo: str, by: str, rows: dict[str, int]) -> None:
    uri, options = audit_uri(config), config.warehouse.storage_options
    ensure_table(uri, AUDIT_SCHEMA, (), "one row per table per lakehouse forget: when, by "
                 "whom, the subject's pseudonym, rows erased", storage_options=options,
                 properties=config.retention.delta_properties)
    now, app = datetime.now(UTC), f"forget:{pseudo[:16]}:audit"
    done = last_batch(uri, app)
    append_rows(pa.Table.from_pylist(
        [{"forgotten_at": now, "by": by, "subject_pseudonym": pseudo, "table": t, "rows": n}
         for t, n in rows.items()], schema=arrow_schema(AUDIT_SCHEMA)),
        uri, BatchCommit(app, 0 if done is None else done + 1), options)
