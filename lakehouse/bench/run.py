"""``lakehouse bench``: the pipelines measured against the machine's limit, in one run.

On a broker and a warehouse of its own (a temporary directory), with the project's
default settings (``conf/local.yaml``) and one source, orders:

1. a backlog of orders (10% faults) is produced;
2. the limit: Kafka's own consumer, and confluent-kafka + a pyarrow Parquet write;
3. bronze, silver and gold each process the whole backlog on one Spark session (its
   start timed apart), every process's CPU and memory sampled from ``/proc``; bronze
   beside the bare bronze peer, silver beside the bare parse (``lakehouse.bench.peers``);
   then bronze and silver again, with the tables' chain digests off and on
   (``lakehouse.io.chain``: tamper evidence), and bronze again from a second broker that
   wants SASL_SSL beside the plaintext one: each one's cost on the hot path
   (``lakehouse.bench.abba``);
4. the naive GX pattern and the project's silver route the same batches;
5. freshness: events produced at a fixed rate while bronze, silver and gold run, once in
   each execution shape (``streaming.shape``: a query per table, then chained), then
   chained again with the openlineage-spark listener off the bus, then the bare chained
   peer; each event's produce -> gold delay read back from the tables' commits
   (``lakehouse.observe.freshness``), the bronze query's consumer lag sampled every second, and
   where each micro-batch's time went (``lakehouse.bench.profile``);
6. growth: a silver and a gold batch timed with more and more rows already in silver
   (``lakehouse.bench.growth``);
7. checks: no duplicate event id in silver, the accounting identity holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from lakehouse import graph
from lakehouse.bench.abba import digest_cost, tls_cost
from lakehouse.bench.growth import measure
from lakehouse.bench.limit import consume_to_parquet, kafka_consume
from lakehouse.bench.load import LagSampler, Paced, produce_paced
from lakehouse.bench.naive import compare
from lakehouse.bench.peers import bare_bronze, bare_chained, bare_parse
from lakehouse.bench.probe import Probe, Roles, python_workers
from lakehouse.bench.profile import breakdown, without_listener
from lakehouse.bench.report import percentiles
from lakehouse.bench.setup import SOURCE, TOPIC, bench_config, own_store
from lakehouse.config import SHAPES
from lakehouse.generator import generate, load_shape
from lakehouse.io.delta_log import open_table
from lakehouse.io.kafka_producer import produce
from lakehouse.io.processes import free_port
from lakehouse.io.storage import join
from lakehouse.observe.events import WRITES as EVENT_LOG_WRITES
from lakehouse.observe.figures import read_events
from lakehouse.printing import Printer
from lakehouse.registry import GoldTable, SilverTable
from lakehouse.servers.broker import EmbeddedBroker
from lakehouse.steps import background_totals

SUSTAINED_P95_S = 30.0
"""A rate is sustained when produce -> gold p95 stays within this (and lag with it)."""
GROWTH_BATCH = 5_000
"""Bronze records in the batch the growth measurement times."""


@dataclass(frozen=True)
class Mode:
    """How much a run measures."""

    name: str
    backlog: int
    """Orders produced before the pipelines start."""
    naive_batches: int
    """Silver batches both the naive pattern and the project route."""
    rate: int
    """Events per second of the steady load."""
    load_seconds: int
    growth: tuple[int, ...]
    """Rows in silver at which one silver and one gold batch are timed."""
    rates: tuple[int, ...]
    """Events per second tried in turn for the sustainable throughput."""
    step_seconds: int


QUICK = Mode("quick", 100_000, 2, 1_000, 20, (100_000, 1_000_000), (2_000, 5_000), 15)
FULL = Mode("full", 1_000_000, 4, 5_000, 120, (1_000_000, 5_000_000, 20_000_000),
            (5_000, 10_000, 20_000), 30)


def run_bench(mode: Mode, printer: Printer, work_dir: Path | None = None,
              object_store: bool = False) -> dict[str, Any]:
    """Run every measurement of ``mode``; the results (see ``report.table``).
    ``object_store``: the warehouse on an S3 store of the run's own (SeaweedFS)."""
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-",
                                     dir=work_dir) as tmp:
        return _Bench(mode, Path(tmp), printer, object_store).run()


class _Bench:
    def __init__(self, mode: Mode, work: Path, printer: Printer, object_store: bool) -> None:
        self.mode = mode
        self.work = work
        self.say = printer
        self.broker = EmbeddedBroker(f"127.0.0.1:{free_port('127.0.0.1')}",
                                     str(work / "broker"))
        self.store = own_store(work) if object_store else None
        self.config = bench_config(work, self.broker.bootstrap, self.store)
        self.scratch = join(self.config.warehouse.root, "_bench")
        """Where the peers and the growth measurement write their tables."""
        self.pipeline = graph.build(self.config)
        self.shape = load_shape(Path(self.config.expectations_dir), SOURCE)
        self.result: dict[str, Any] = {
            "mode": mode.name, "machine": _machine(),
            "warehouse": "object store (SeaweedFS, S3 API)" if self.store else "local disk",
            "started_at": datetime.now(UTC).isoformat()}

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.say(f"bench ({self.mode.name}): broker at {self.broker.bootstrap}, "
                 f"warehouse {self.config.warehouse.root} ({self.result['warehouse']})")
        with contextlib.ExitStack() as servers:
            if self.store:
                self.store.up()
                servers.callback(self.store.down)
            self.broker.up()
            servers.callback(self.broker.down)
            self._produce_backlog()
            self._limit()
            self._pipelines()
        self.result["seconds"] = time.monotonic() - started
        return self.result

    # -- steps ---------------------------------------------------------------------------

    def _produce_backlog(self) -> None:
        from lakehouse.runner import ensure_source_topics
        ensure_source_topics(self.config, [SOURCE])
        n = self.mode.backlog
        t0 = time.monotonic()
        produce(self.broker.bootstrap, TOPIC, generate(self.shape, n, seed=7, faults=0.1),
                progress=lambda k: self.say(f"  produced {k:,} of {n:,} orders"),
                progress_every=max(n // 4, 1))
        self.say(f"1/7 backlog: {n:,} orders (10% faults) produced in "
                 f"{time.monotonic() - t0:.1f}s")

    def _limit(self) -> None:
        n = self.mode.backlog
        kafka = kafka_consume(self.broker.bootstrap, TOPIC, n, self.work / "tools")
        self.say(f"2/7 limit: Kafka's consumer read {n:,} records at {kafka.per_second:,.0f}/s")
        parquet = consume_to_parquet(self.broker.bootstrap, TOPIC, n, join(self.scratch, "parquet"))
        self.say(f"    consume + Parquet (confluent-kafka, pyarrow): "
                 f"{parquet.per_second:,.0f} records/s")
        self.result["limit"] = {"kafka_consumer_per_s": kafka.per_second,
                                "consume_parquet_per_s": parquet.per_second,
                                "consume_parquet_s": parquet.seconds}

    def _pipelines(self) -> None:
        from lakehouse.spark import build_session, stop_session
        t0 = time.monotonic()
        spark = build_session(self.config, streaming=True)
        self.result["session_start_s"] = time.monotonic() - t0
        self.say(f"3/7 Spark session ({self.config.spark.master}) started in "
                 f"{self.result['session_start_s']:.1f}s")
        jvm = spark.sparkContext._gateway.proc.pid  # type: ignore[union-attr]
        with Probe(self._roles(jvm)) as probe:
            try:
                self._layers(spark, probe)
                self._naive(spark)
                self._freshness(spark)
                self._throughput(spark)
                self._growth(spark)
            finally:
                stop_session(spark)
        self._checks()
        usage = probe.usage()
        self.result["memory_mb"] = {role: u.peak_rss_mb for role, u in usage.items()}
        self.result["memory_mb"]["Python workers (sum at peak)"] = \
            usage["Python workers"].peak_total_rss_mb
        self.result["cpu_s"] = {role: u.cpu_seconds for role, u in usage.items()}

    def _gold_tables(self) -> list[str]:
        """The gold tables built from the bench's source."""
        return [q.name for q in self.pipeline.layer(graph.Layer.GOLD)
                if isinstance(q.definition, GoldTable) and q.definition.silver == SOURCE]

    def _indented(self, line: str) -> None:
        self.say(f"    {line}")

    def _roles(self, jvm: int) -> Roles:
        broker = self.broker.status().pid
        me = os.getpid()
        return {"driver JVM": lambda: [jvm],
                "driver Python": lambda: [me],
                "Python workers": lambda: python_workers(jvm),
                "broker": lambda: [broker] if broker else []}

    def _layers(self, spark: Any, probe: Probe) -> None:
        from lakehouse.runner import run
        gold = self._gold_tables()
        n = self.mode.backlog
        stages = []
        core_seconds = 0.0
        for name, tables in (("bronze", [f"bronze.{SOURCE}"]), ("silver", [f"silver.{SOURCE}"]),
                             ("gold", gold)):
            cpu0 = probe.cpu_seconds()
            t0 = time.monotonic()
            summary = run(self.pipeline, until_idle=True, tables=tables, spark=spark,
                          printer=self._indented)
            seconds = time.monotonic() - t0
            probe.sample()
            cpu = probe.cpu_seconds() - cpu0
            core_seconds += cpu
            stage = {"name": name, "tables": tables, "records": n, "seconds": seconds,
                     "per_s": n / seconds, "input_rows": summary.queries.get(tables[0], 0),
                     "core_seconds": cpu, "target": ""}
            if name == "bronze":
                ratio = stage["per_s"] / self.result["limit"]["consume_parquet_per_s"]
                stage["of_limit"] = ratio
                stage["target"] = f"{ratio:.0%} of the limit (target >= 50%)"
            stages.append(stage)
            self.say(f"4/7 {name}: {n:,} orders in {seconds:.1f}s = {n / seconds:,.0f}/s, "
                     f"{cpu:.1f} core-seconds")
            peer = self._peer(spark, name)
            if peer is not None:
                stage["peer"] = peer
        self.result["stages"] = stages
        self.result["core_seconds_per_million"] = core_seconds / n * 1_000_000
        self._digests(spark)
        self._tls(spark)

    def _digests(self, spark: Any) -> None:
        """The chain's cost on the hot path."""
        rates = digest_cost(spark, self.work, self.broker.bootstrap, self.store,
                            self.mode.backlog, [f"bronze.{SOURCE}", f"silver.{SOURCE}"],
                            self.config.retention.tamper_evidence)
        for table, rate in rates.items():
            layer = table.split(".")[0]
            self.say(f"4/7 {layer} again, digests off / on: {rate['off']:,.0f} / "
                     f"{rate['on']:,.0f} records/s ({rate['cost']:+.1%} for the chain)")
        self.result["digests"] = {t.split(".")[0]: r for t, r in rates.items()}

    def _tls(self, spark: Any) -> None:
        """Bronze from a broker that wants SASL_SSL beside the plaintext one."""
        n = self.mode.backlog
        protocol, rate = tls_cost(spark, self.work, self.broker.bootstrap, self.store,
                                  lambda: generate(self.shape, n, seed=7, faults=0.1), n)
        self.say(f"4/7 bronze again, Kafka plaintext / {protocol}: {rate['off']:,.0f} / "
                 f"{rate['on']:,.0f} records/s ({rate['cost']:+.1%} for TLS)")
        self.result["tls"] = {"protocol": protocol, **rate}

    def _peer(self, spark: Any, layer: str) -> dict[str, Any] | None:
        """The bare design of ``layer`` over the same records (``lakehouse.bench.peers``)."""
        if layer == "bronze":
            timed, name = bare_bronze(spark, self._kafka(), self.scratch), "bare bronze"
        elif layer == "silver":
            timed, name = bare_parse(spark, self._plan()), "bare parse"
        else:
            return None
        self.say(f"    peer, {name}: {timed.records:,} records in {timed.seconds:.1f}s = "
                 f"{timed.per_second:,.0f}/s")
        return {"name": name, "records": timed.records, "seconds": timed.seconds,
                "per_s": timed.per_second}

    def _kafka(self) -> dict[str, str]:
        from lakehouse.layers.bronze import kafka_options
        return kafka_options(self.config, SOURCE)

    def _plan(self) -> Any:
        from lakehouse.layers.routing import load_plan
        return load_plan(self.pipeline, self._silver_table())

    def _silver_table(self) -> SilverTable:
        table = self.pipeline.query(f"silver.{SOURCE}").definition
        assert isinstance(table, SilverTable)
        return table

    def _naive(self, spark: Any) -> None:
        from lakehouse.layers.ledger import LedgerKind
        plan = self._plan()
        ledger = open_table(plan.ledger_uri, plan.storage_options)
        assert ledger is not None
        lines = ledger.to_pyarrow_table(columns=["kind", "bronze_from_version",
                                                 "bronze_to_version", "bronze_rows"])
        lines = lines.filter(pc.field("kind") == LedgerKind.STREAM) \
            .sort_by("bronze_from_version")
        ranges = [(r["bronze_from_version"], r["bronze_to_version"], r["bronze_rows"])
                  for r in lines.to_pylist()][:self.mode.naive_batches]
        self.say(f"5/7 naive GX pattern vs project silver on {len(ranges)} silver batches ...")
        c = compare(plan, spark, ranges)
        self.result["naive"] = {"batches": c.batches, "records": c.records,
                                "project_s": c.project_seconds, "naive_s": c.naive_seconds,
                                "ratio": c.ratio, "mismatched_records": c.mismatched_records}
        self.say(f"    project {c.project_seconds:.1f}s, naive {c.naive_seconds:.1f}s: "
                 f"{c.ratio:.1f}x; records routed differently: {c.mismatched_records}")

    def _freshness(self, spark: Any) -> None:
        """The steady load, once per execution shape (``streaming.shape``), one after the
        other on the same tables."""
        self.result["freshness"] = [self._fresh(spark, shape, n)
                                    for n, shape in enumerate(SHAPES)]
        with without_listener(spark) as removed:
            if removed:  # the listener's cost: the chained load again without it
                off = self._fresh(spark, "chained", len(SHAPES), "openlineage-spark listener off")
                self.result["freshness"].append(off)
        self.result["bare_chained"] = self._bare_chained(spark, len(SHAPES) + 1)

    def _throughput(self, spark: Any) -> None:
        """The chained shape at rising rates until one it does not keep up with (p95
        over ``SUSTAINED_P95_S``, a lag at the end it cannot drain within that, or the
        producer fell behind its own schedule)."""
        steps = []
        for n, rate in enumerate(self.mode.rates):
            step = self._fresh(spark, "chained", 10 + n, f"throughput step {rate:,}/s",
                               rate=rate, seconds=self.mode.step_seconds)
            worst = max((p.get("p95", 0.0) for p in step["produce_to_gold_s"].values()),
                        default=0.0)
            # Lag bounded: what is left when the load stops drains within the p95 bound.
            kept = (worst <= SUSTAINED_P95_S and step["lag_end"] <= rate * SUSTAINED_P95_S
                    and step["behind_s"] < 1.0)
            steps.append({"rate": rate, "p95_s": worst, "lag_end": step["lag_end"],
                          "behind_s": step["behind_s"], "kept_up": kept})
            self.say(f"    {rate:,}/s: p95 {worst:.1f}s, lag at end {step['lag_end']:,}, "
                     f"{'kept up' if kept else 'did not keep up'}")
            if not kept:
                break
        self.result["throughput"] = steps

    def _growth(self, spark: Any) -> None:
        from lakehouse.layers.gold import load_gold_plan
        sizes = self.mode.growth
        self.say(f"7/7 growth: a silver and a gold batch with {', '.join(f'{n:,}' for n in sizes)}"
                 " rows in silver ...")
        table = self.pipeline.query(self._gold_tables()[0]).definition
        assert isinstance(table, GoldTable)
        self.result["growth"] = measure(spark, self._plan(), load_gold_plan(self.pipeline, table),
                                        sizes, GROWTH_BATCH, join(self.scratch, "growth"), self.say)

    def _steady_load(self, n: int, rate: int, seconds: int, what: str,
                     during: str = "") -> Callable[[], Paced]:
        """``rate`` events/s for ``seconds``, announced as freshness ``what``."""
        # Made before the clock starts: the producer must not be what limits the rate.
        records = list(generate(self.shape, rate * seconds, seed=11 + n))

        def load() -> Paced:
            self.say(f"6/7 freshness ({what}): {rate:,} events/s for {seconds}s{during} ...")
            return produce_paced(self.broker.bootstrap, TOPIC, iter(records), rate, seconds)
        return load

    def _bare_chained(self, spark: Any, n: int) -> dict[str, Any]:
        load = self._steady_load(n, self.mode.rate, self.mode.load_seconds, "bare chained peer")
        peer = bare_chained(spark, self._kafka(), self._plan(), join(self.scratch, "chained"),
                            self.config.streaming.trigger_seconds, load)
        p = peer["produce_to_gold_s"]
        self.say(f"    bare chained: {peer['batches']} batches, median {peer['batch_s']:.1f}s "
                 f"each; p50 {p.get('p50', 0):.1f}s p95 {p.get('p95', 0):.1f}s")
        return peer

    def _fresh(self, spark: Any, shape: str, n: int, variant: str = "", rate: int = 0,
               seconds: int = 0) -> dict[str, Any]:
        from lakehouse.observe.freshness import freshness
        from lakehouse.runner import run
        config = dataclasses.replace(self.config, streaming=dataclasses.replace(
            self.config.streaming, shape=shape))
        g = dataclasses.replace(self.pipeline, config=config)  # the same tables, run in `shape`
        gold = self._gold_tables()
        tables = [f"bronze.{SOURCE}", f"silver.{SOURCE}", *gold]
        rate, seconds = rate or self.mode.rate, seconds or self.mode.load_seconds
        checkpoint = config.warehouse.checkpoint_uri(f"bronze.{SOURCE}")
        sampler = LagSampler(self.broker.bootstrap, TOPIC, checkpoint)
        paced: list[Paced] = []
        produce_load = self._steady_load(n, rate, seconds,
                                         f"{shape} shape{', ' + variant if variant else ''}",
                                         " while bronze, silver and gold run")

        def load() -> None:
            with sampler:
                paced.append(produce_load())

        since = datetime.now(UTC)
        log0 = background_totals()
        run(g, until_idle=True, tables=tables, spark=spark,
            printer=self._indented, then=[load])
        log_writes = (background_totals().get(EVENT_LOG_WRITES, 0.0)
                      - log0.get(EVENT_LOG_WRITES, 0.0))
        rows = [{**r, "duration_ms": dict(r["duration_ms"] or [])}
                for r in read_events(config, since).to_pylist()]
        profile = breakdown(rows)
        delays = {name: percentiles(freshness(g, definition, since).seconds)
                  for name in gold
                  if isinstance(definition := g.query(name).definition, GoldTable)}
        lags = [lag for _, lag in sampler.samples]
        for name, p in delays.items():
            self.say(f"    {name}: p50 {p.get('p50', 0):.1f}s p95 {p.get('p95', 0):.1f}s "
                     f"p99 {p.get('p99', 0):.1f}s max {p.get('max', 0):.1f}s")
        return {"shape": shape, "rate": rate, "seconds": seconds,
                "variant": variant, "breakdown": profile, "event_log_s": log_writes,
                "events": paced[0].records, "behind_s": paced[0].behind_seconds,
                "produce_to_gold_s": delays,
                "lag_max": max(lags, default=0), "lag_end": lags[-1] if lags else 0,
                "lag_samples": sampler.samples}

    def _checks(self) -> None:
        from lakehouse.layers.ledger import accounting
        table = self._silver_table()
        silver = open_table(self.config.warehouse.table_uri("silver", SOURCE),
                            dict(self.config.warehouse.storage_options))
        assert silver is not None
        ids = silver.to_pyarrow_table(columns=["event_id"]).column("event_id")
        duplicates = len(ids) - pc.count_distinct(ids).as_py()
        acc = accounting(self.pipeline, table)
        self.result["checks"] = {"silver_duplicates": duplicates,
                                 "accounting_holds": acc.holds,
                                 "accounting": acc.describe()}
        self.say(f"checks: {duplicates} duplicate event ids in silver; {acc.describe()}")


def _machine() -> Mapping[str, Any]:
    import platform
    return {"cores": os.cpu_count(), "python": platform.python_version(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)}
