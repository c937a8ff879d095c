"""Typed configuration: `conf/*.yaml` parsed once into frozen dataclasses.

Precedence, written down once: explicit argument > environment variable > YAML file >
dataclass default. Environment overrides:

- ``LAKEHOUSE_CONF``: which YAML file (default ``conf/local.yaml``);
- ``LAKEHOUSE_KAFKA_BOOTSTRAP``: bootstrap servers of a real cluster (turns the embedded
  broker off);
- ``LAKEHOUSE_WAREHOUSE``: warehouse root (checkpoints follow it unless set explicitly);
- ``LAKEHOUSE_LINEAGE_DISABLED=true``: emit no OpenLineage events (the kill switch);
- ``LAKEHOUSE_SCHEMA_REGISTRY_URL``: a real schema registry's URL (turns the embedded one
  off).

Unknown keys, missing required keys and wrongly typed values fail here, before Spark
starts, with an error naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.storage import join
from lakehouse.quality.contract import COMPATIBILITY_LEVELS, FORMATS, load_contract

DEFAULT_CONF = "conf/local.yaml"
ENV_CONF = "LAKEHOUSE_CONF"
ENV_BOOTSTRAP = "LAKEHOUSE_KAFKA_BOOTSTRAP"
ENV_WAREHOUSE = "LAKEHOUSE_WAREHOUSE"
ENV_LINEAGE_DISABLED = "LAKEHOUSE_LINEAGE_DISABLED"
ENV_REGISTRY = "LAKEHOUSE_SCHEMA_REGISTRY_URL"


@dataclass(frozen=True)
class EmbeddedBrokerConfig:
    """The Apache Kafka broker (KRaft) the project starts itself for local work and tests."""

    enabled: bool = True
    data_dir: str = ""
    """Where the broker keeps its log; default ``<warehouse>/_broker``."""
    startup_timeout_seconds: float = 30.0
    sasl_users: Mapping[str, str] = field(default_factory=dict, repr=False)
    """SASL/PLAIN users and their passwords (write ``${ENV_VAR}`` to take one from the
    environment). None: the broker takes anyone, unauthenticated. Some: its client
    listener wants SASL_PLAINTEXT and KRaft's ``StandardAuthorizer`` allows only what
    ``topic_acls`` grants."""
    admin_user: str = "admin"
    """The user (one of ``sasl_users``) the broker itself and ``lakehouse broker`` act as:
    a super user."""
    topic_acls: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """User -> the topics it may create, describe, read and write (any consumer group)."""


@dataclass(frozen=True)
class KafkaConfig:
    """How to reach Kafka. Only the Kafka protocol is used, so any cluster works."""

    bootstrap_servers: str
    embedded: EmbeddedBrokerConfig = field(default_factory=EmbeddedBrokerConfig)
    client_properties: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Extra librdkafka properties (security.protocol, sasl.*, ssl.*) for every client;
    write ``${ENV_VAR}`` for a secret (``sasl.password: ${KAFKA_PASSWORD}``)."""
    unavailable_timeout_seconds: float = 300.0
    """How long a running job waits for a broker that stopped answering (restarting its
    Kafka queries with backoff once it is back) before it stops with LH-KAFKA-004 and exit
    code 75."""


@dataclass(frozen=True)
class EmbeddedRegistryConfig:
    """The Apicurio Registry the project starts itself for local work and tests."""

    enabled: bool = True
    data_dir: str = ""
    """Where it keeps its schemas (an H2 database file); default ``<warehouse>/_registry``."""
    startup_timeout_seconds: float = 90.0


@dataclass(frozen=True)
class SchemaRegistryConfig:
    """The schema registry of the Avro sources (any registry serving the Confluent API)."""

    url: str = "http://127.0.0.1:18081/apis/ccompat/v7"
    embedded: EmbeddedRegistryConfig = field(default_factory=EmbeddedRegistryConfig)
    compatibility: str = "BACKWARD"
    """The level the project sets on every subject it owns (registering a schema enforces
    nothing until one is set): BACKWARD lets consumers upgrade first; FULL also keeps old
    readers working."""
    client_properties: Mapping[str, str] = field(default_factory=dict, repr=False)
    """confluent-kafka's registry client settings (``basic.auth.user.info``, ``ssl.*``);
    write ``${ENV_VAR}`` for a secret."""


@dataclass(frozen=True)
class WarehouseConfig:
    """Where tables and streaming checkpoints live (local path or object-store URI)."""

    root: str
    checkpoints: str = ""
    """Default ``<root>/_checkpoints``."""
    storage_options: Mapping[str, str] = field(default_factory=dict)
    """Passed to delta-rs (e.g. AWS_REGION, AWS_ENDPOINT_URL)."""

    def table_uri(self, layer: str, name: str) -> str:
        """The storage URI of table ``layer.name``."""
        return join(self.root, layer, name)

    def checkpoint_uri(self, query_name: str) -> str:
        """The Spark checkpoint location of one streaming query."""
        return join(self.checkpoints, query_name)



@dataclass(frozen=True)
class SparkConfig:
    """The SparkSession the jobs build (ignored where spark-submit already made one)."""

    master: str = "local[2]"
    app_name: str = "lakehouse"
    shuffle_partitions: int = 2
    driver_memory: str = "4g"
    """Heap of the driver JVM (Spark's ``spark.driver.memory``); with a ``local`` master
    the executors run inside it too. Set when the project starts the JVM; under
    spark-submit, ``--driver-memory`` decides."""
    driver_java_options: str = ""
    """JVM options of the driver, set when the project starts the JVM. Nothing by
    default. ``-XX:TieredStopAtLevel=1`` (the JIT's quick tier only) runs a small job
    in 52 s instead of 122 s on two cores, but with it the driver's SparkContext stopped
    or the JVM vanished mid-run in three of three CI runs of the suite (never without it),
    so it is a measured option, not the default."""
    conf: Mapping[str, str] = field(default_factory=dict)


SHAPES = ("tables", "chained")
"""How the streaming queries are laid out (``streaming.shape``)."""


@dataclass(frozen=True)
class StreamingConfig:
    """Defaults shared by every streaming query."""

    trigger_seconds: float = 2.0
    max_offsets_per_trigger: int = 250_000
    """Records per bronze micro-batch at most: each batch has a fixed cost (a Delta
    commit, planning, code generation), so a backlog drains faster in fewer, bigger
    batches; at a steady rate batches stay as small as the trigger interval makes them."""
    starting_offsets: str = "earliest"
    fail_on_data_loss: bool = True
    min_partitions: int = 0
    """Spark's ``minPartitions``: split Kafka partitions into at least this many tasks
    (0: one task per Kafka partition)."""
    shape: str = "chained"
    """``chained``: one query per source; each micro-batch lands bronze, then routes it
    into silver, then merges that into gold (``lakehouse.chain``): a record waits for one
    trigger, not one per layer. ``tables``: one streaming query per table, each with its
    own checkpoint and trigger (tables restart and replay on their own)."""


@dataclass(frozen=True)
class SilverConfig:
    """How silver reads bronze and enforces contracts and expectations."""

    expectations_dir: str = ""
    """Contracts and GX suites (``<table>.contract.yaml``, ``<table>.suite.json``);
    default: the project's ``expectations/`` folder."""
    max_bytes_per_trigger: str = "64m"
    """Bronze data per silver micro-batch (Delta's ``maxBytesPerTrigger``: a soft cap,
    at least one file)."""
    critical_max_unexpected_percent: float = 5.0
    """A critical expectation failing on more than this share of a batch stops the query
    (an expectation's ``meta.max_unexpected_percent`` overrides it)."""


@dataclass(frozen=True)
class GoldConfig:
    """How gold reads silver."""

    max_bytes_per_trigger: str = "64m"
    """Silver data per gold micro-batch (Delta's ``maxBytesPerTrigger``: a soft cap, at
    least one file)."""


@dataclass(frozen=True)
class LineageConfig:
    """Where the OpenLineage events of every run and micro-batch go.

    Transports: a JSON-lines file (on by default), HTTP to a lineage server speaking the
    OpenLineage API such as Marquez (when ``http_url`` is set), the console (debugging).
    Emission runs off the batch's path; a transport that fails is logged, never raised.
    """

    enabled: bool = True
    namespace: str = ""
    """The jobs' namespace; default: the project name."""
    file: bool = True
    dir: str = ""
    """Where the file transport writes, a local folder (default ``<warehouse>/_lineage``):
    ``spark.jsonl`` from the Spark listener, ``lakehouse.jsonl`` from the project."""
    http_url: str = ""
    """e.g. ``http://marquez:5000``; events are POSTed to ``<http_url>/<http_endpoint>``."""
    http_endpoint: str = "api/v1/lineage"
    http_api_key: str = ""
    http_timeout_seconds: float = 5.0
    console: bool = False


@dataclass(frozen=True)
class RetentionConfig:
    """How long old table versions stay readable."""

    audit_window_hours: float = 168.0
    """``lakehouse vacuum`` keeps every version younger than this unless forced (and is
    its default retention): auditors can read the tables as they were this far back."""


@dataclass(frozen=True)
class PrivacyConfig:
    """The key of the pseudonyms silver holds for the contracts' ``pii: true`` fields."""

    key_env: str = "LAKEHOUSE_PII_KEY"
    """The environment variable holding the HMAC-SHA256 key; a run that pseudonymises
    refuses to start without it (LH-CONF-008)."""
    dev_key: str = field(default="", repr=False)
    """A key for local work only (conf/local.yaml sets a documented one, which is no
    secret): used when the variable is unset. Never set it in a real deployment."""


@dataclass(frozen=True)
class ObserveConfig:
    """The event log of every micro-batch, and the Prometheus endpoint."""

    events: bool = True
    """Append one row per micro-batch to ``_system.events`` (``lakehouse status``,
    ``slo`` and ``report`` read it)."""
    flush_seconds: float = 5.0
    """How often the rows are written (one Delta commit each time there are rows)."""
    metrics_port: int = 0
    """Serve the figures in the Prometheus text format at ``http://<host>:<port>/metrics``
    while ``lakehouse run`` runs; 0: off."""
    metrics_host: str = "127.0.0.1"


@dataclass(frozen=True)
class SloConfig:
    """Service-level objectives, judged over the event log's last ``window_minutes``
    (``lakehouse slo``). An objective is breached when its error budget burns faster than
    the window allows (burn rate above 1)."""

    window_minutes: float = 60.0
    freshness_p95_seconds: float = 60.0
    """95% of gold batches commit their records within this long of the events (their
    p95 event -> gold latency)."""
    pass_rate_min: float = 0.995
    """Share of records meeting the contract and suite (the rest is quarantined)."""
    duplicate_rate_max: float = 0.0
    """Share of silver's records whose event id silver holds more than once."""
    lag_p95_records: int = 10_000
    """95% of the Kafka queries' batches end this close to the topic's end."""


@dataclass(frozen=True)
class SourceSettings:
    """A deployment's settings of one source (``sources.<name>``), where they differ from
    what its contract declares (``<expectations>/<name>.contract.yaml``)."""

    enabled: bool = True
    """False: this deployment does not run the source; its tables are skipped, said so."""
    topic: str = ""
    """Empty: the contract's topic."""
    partitions: int = 0
    """0: the contract's (the topic's partitions when the project creates it)."""
    format: str = ""
    """Empty: the contract's (``json`` or ``avro``)."""
    replication_factor: int = 1
    max_offsets_per_trigger: int = 0
    """0 means the streaming default."""


@dataclass(frozen=True)
class SourceConfig:
    """One source as this deployment runs it: its contract's declaration with the
    config's settings applied. Its records land in the bronze table of the same name."""

    name: str
    topic: str
    partitions: int
    replication_factor: int = 1
    max_offsets_per_trigger: int = 0
    """0 means the streaming default."""
    format: str = "json"
    """``json`` (one JSON object per value) or ``avro`` (Confluent wire format, its schema
    derived from the contract and registered under ``<topic>-value``)."""


CONTRACT_SUFFIX = ".contract.yaml"


@dataclass(frozen=True)
class Config:
    """The whole configuration of a lakehouse deployment."""

    project: str
    kafka: KafkaConfig
    warehouse: WarehouseConfig
    spark: SparkConfig = field(default_factory=SparkConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    silver: SilverConfig = field(default_factory=SilverConfig)
    gold: GoldConfig = field(default_factory=GoldConfig)
    lineage: LineageConfig = field(default_factory=LineageConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    observe: ObserveConfig = field(default_factory=ObserveConfig)
    slo: SloConfig = field(default_factory=SloConfig)
    schema_registry: SchemaRegistryConfig = field(default_factory=SchemaRegistryConfig)
    sources: Mapping[str, SourceSettings] = field(default_factory=dict)
    """Per-source settings; the sources themselves are declared by their contracts."""
    source_file: str = ""
    """The YAML file this was read from (set by the loader, not by the file)."""

    @functools.cached_property
    def _declared(self) -> dict[str, SourceConfig]:
        """Every source a contract declares, with this config's settings applied (read
        once); settings naming no contract fail here."""
        folder = self.expectations_dir
        declared = {}
        for path in sorted(folder.glob(f"*{CONTRACT_SUFFIX}")):
            contract = load_contract(path)
            name = path.name.removesuffix(CONTRACT_SUFFIX)
            own = self.sources.get(name, SourceSettings())
            declared[name] = SourceConfig(
                name, own.topic or contract.topic, own.partitions or contract.partitions,
                own.replication_factor, own.max_offsets_per_trigger,
                own.format or contract.format)
        for name in self.sources:
            if name not in declared:
                raise LakehouseError(
                    ErrorCode.UNKNOWN_SOURCE,
                    f"{self.source_file}: sources.{name} sets a source no contract declares "
                    f"(contracts in {folder}: {', '.join(declared) or 'none'})",
                    hint=f"write {folder / (name + CONTRACT_SUFFIX)} (see "
                         "expectations/README.md), or remove sources."
                         f"{name} from the config", source=name, key=f"sources.{name}")
        return declared

    @property
    def declared_sources(self) -> tuple[str, ...]:
        """Every source a contract declares (run by this deployment or not), sorted."""
        return tuple(self._declared)

    @property
    def source_names(self) -> tuple[str, ...]:
        """The sources this deployment runs: every declared one not disabled, sorted."""
        return tuple(n for n in self._declared
                     if self.sources.get(n, SourceSettings()).enabled)

    def source_unavailable(self, name: str) -> str | None:
        """Why this deployment does not run source ``name`` (None: it does)."""
        if name not in self._declared:
            return (f"no contract declares source {name!r} "
                    f"({self.expectations_dir / (name + CONTRACT_SUFFIX)} does not exist)")
        if not self.sources.get(name, SourceSettings()).enabled:
            return f"source {name!r} is disabled in {self.source_file} (sources.{name}.enabled)"
        return None

    def source_remedy(self, name: str) -> str:
        """What makes this deployment run source ``name`` (see ``source_unavailable``)."""
        if name in self._declared:
            return f"set sources.{name}.enabled: true in {self.source_file}"
        return (f"write {self.expectations_dir / (name + CONTRACT_SUFFIX)} and its suite "
                f"(README: Adding a source); runnable sources: "
                f"{', '.join(self.source_names) or 'none'}")

    def source(self, name: str) -> SourceConfig:
        """The named source as this deployment runs it, or LH-DEF-001 saying why not."""
        why = self.source_unavailable(name)
        if why is not None:
            raise LakehouseError(ErrorCode.UNKNOWN_SOURCE, why,
                                 hint=self.source_remedy(name), source=name)
        return self._declared[name]

    @property
    def expectations_dir(self) -> Path:
        """Where contracts and expectation suites live."""
        if self.silver.expectations_dir:
            return Path(self.silver.expectations_dir)
        return default_expectations_dir(Path(__file__), Path.cwd())

    @property
    def lineage_namespace(self) -> str:
        """The OpenLineage namespace of this deployment's jobs."""
        return self.lineage.namespace or self.project

    @property
    def lineage_file(self) -> str:
        """Where the file transport writes the project's events (JSON lines)."""
        return join(self._lineage_dir, "lakehouse.jsonl")

    @property
    def listener_file(self) -> str:
        """Where the file transport writes the Spark listener's events (JSON lines)."""
        return join(self._lineage_dir, "spark.jsonl")

    @property
    def _lineage_dir(self) -> str:
        return _absolute(self.lineage.dir) if self.lineage.dir \
            else join(self.warehouse.root, "_lineage")

    @property
    def registry_data_dir(self) -> str:
        """Where the embedded schema registry keeps its schemas."""
        return self.schema_registry.embedded.data_dir or join(self.warehouse.root, "_registry")

    @property
    def broker_data_dir(self) -> str:
        """Where the embedded broker keeps its data."""
        return self.kafka.embedded.data_dir or join(self.warehouse.root, "_broker")


def default_expectations_dir(package_file: Path, cwd: Path) -> Path:
    """The project's ``expectations/`` folder: beside the ``lakehouse`` package when it is
    a folder on disk; from the working directory when the package is imported from a
    zip (a job under ``spark-submit --py-files``, started from the project)."""
    project = package_file.resolve().parents[1]
    return (project if project.is_dir() else cwd) / "expectations"


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    bootstrap_servers: str | None = None,
    warehouse: str | None = None,
) -> Config:
    """Read, validate and freeze the configuration.

    ``path`` beats ``LAKEHOUSE_CONF`` beats ``conf/local.yaml``; ``bootstrap_servers`` and
    ``warehouse`` beat their environment variables, which beat the file.
    """
    env = os.environ if env is None else env
    conf_path = Path(path or env.get(ENV_CONF) or DEFAULT_CONF)
    if not conf_path.is_file():
        raise LakehouseError(
            ErrorCode.CONFIG_NOT_FOUND,
            f"config file {conf_path} does not exist",
            hint=f"pass --conf FILE or set {ENV_CONF}; conf/local.yaml is the embedded default",
            file=str(conf_path),
        )
    try:
        raw = yaml.safe_load(conf_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise LakehouseError(
            ErrorCode.CONFIG_INVALID_YAML,
            f"{conf_path} is not valid YAML: {exc}",
            hint="fix the syntax at the line and column shown",
            file=str(conf_path),
        ) from exc
    return parse_config(raw, source_file=str(conf_path), env=env,
                        bootstrap_servers=bootstrap_servers, warehouse=warehouse)


def parse_config(
    raw: Any,
    *,
    source_file: str = "<memory>",
    env: Mapping[str, str] | None = None,
    bootstrap_servers: str | None = None,
    warehouse: str | None = None,
) -> Config:
    """Validate an already-loaded YAML document and apply the overrides."""
    env = {} if env is None else env
    if not isinstance(raw, dict):
        raise LakehouseError(
            ErrorCode.CONFIG_BAD_VALUE,
            f"{source_file}: the top level must be a mapping of keys, got {type(raw).__name__}",
            file=source_file, key="",
        )
    config = _build(Config, {**raw, "source_file": source_file}, "", source_file)

    config = _with_secrets(config, env)
    bootstrap = bootstrap_servers or env.get(ENV_BOOTSTRAP)
    if bootstrap:
        # A cluster given from outside is used as it is: never start a broker for it.
        config = dataclasses.replace(config, kafka=dataclasses.replace(
            config.kafka, bootstrap_servers=bootstrap,
            embedded=dataclasses.replace(config.kafka.embedded, enabled=False)))
    registry = env.get(ENV_REGISTRY)
    if registry:
        config = dataclasses.replace(config, schema_registry=dataclasses.replace(
            config.schema_registry, url=registry, embedded=dataclasses.replace(
                config.schema_registry.embedded, enabled=False)))
    root = warehouse or env.get(ENV_WAREHOUSE)
    if root:
        config = dataclasses.replace(
            config, warehouse=dataclasses.replace(config.warehouse, root=root, checkpoints=""))
    if env.get(ENV_LINEAGE_DISABLED, "").strip().lower() in ("1", "true", "yes"):
        config = dataclasses.replace(
            config, lineage=dataclasses.replace(config.lineage, enabled=False))
    wh = config.warehouse
    root_abs = _absolute(wh.root)
    checkpoints = _absolute(wh.checkpoints) if wh.checkpoints else join(root_abs, "_checkpoints")
    config = dataclasses.replace(
        config, warehouse=dataclasses.replace(wh, root=root_abs, checkpoints=checkpoints))
    _check_values(config)
    return config


_SECRET = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _with_secrets(config: Config, env: Mapping[str, str]) -> Config:
    """Kafka credentials with each ``${NAME}`` replaced by environment variable NAME, so no
    secret needs to live in a config file; an unset one fails here, naming the key."""
    def resolve(values: Mapping[str, str], prefix: str) -> dict[str, str]:
        out = {}
        for key, value in values.items():
            for name in _SECRET.findall(value):
                if name not in env:
                    raise LakehouseError(
                        ErrorCode.SECRET_NOT_SET,
                        f"{config.source_file}: {prefix}.{key} takes its value from the "
                        f"environment variable {name}, which is not set",
                        hint=f"export {name}=... before running", file=config.source_file,
                        key=f"{prefix}.{key}", variable=name)
            out[key] = _SECRET.sub(lambda m: env[m.group(1)], value)
        return out

    kafka, registry = config.kafka, config.schema_registry
    return dataclasses.replace(config, kafka=dataclasses.replace(
        kafka, client_properties=resolve(kafka.client_properties, "kafka.client_properties"),
        embedded=dataclasses.replace(kafka.embedded, sasl_users=resolve(
            kafka.embedded.sasl_users, "kafka.embedded.sasl_users"))),
        schema_registry=dataclasses.replace(registry, client_properties=resolve(
            registry.client_properties, "schema_registry.client_properties")))


def _check_values(config: Config) -> None:
    def bad(key: str, message: str) -> LakehouseError:
        return LakehouseError(ErrorCode.CONFIG_BAD_VALUE, f"{config.source_file}: {key}: {message}",
                              file=config.source_file, key=key)

    if not config.kafka.bootstrap_servers.strip():
        raise bad("kafka.bootstrap_servers", "must name at least one host:port")
    for server in config.kafka.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            raise bad("kafka.bootstrap_servers", f"{server!r} is not host:port")
    embedded = config.kafka.embedded
    if embedded.sasl_users and embedded.admin_user not in embedded.sasl_users:
        raise bad("kafka.embedded.admin_user", f"{embedded.admin_user!r} is not one of "
                  "kafka.embedded.sasl_users")
    for user in embedded.topic_acls:
        if user not in embedded.sasl_users:
            raise bad(f"kafka.embedded.topic_acls.{user}", "names no user of "
                      "kafka.embedded.sasl_users")
    if config.kafka.unavailable_timeout_seconds <= 0:
        raise bad("kafka.unavailable_timeout_seconds", "must be positive")
    if config.streaming.max_offsets_per_trigger <= 0:
        raise bad("streaming.max_offsets_per_trigger", "must be a positive number of records")
    if config.streaming.trigger_seconds < 0:
        raise bad("streaming.trigger_seconds", "must be zero or positive")
    if config.streaming.shape not in SHAPES:
        raise bad("streaming.shape", f"must be one of {', '.join(SHAPES)}, not "
                  f"{config.streaming.shape!r}")
    start = config.streaming.starting_offsets
    if start not in ("earliest", "latest") and not start.lstrip().startswith("{"):
        raise bad("streaming.starting_offsets", "must be earliest, latest or a JSON offsets map")
    for key, size in (("silver.max_bytes_per_trigger", config.silver.max_bytes_per_trigger),
                      ("gold.max_bytes_per_trigger", config.gold.max_bytes_per_trigger),
                      ("spark.driver_memory", config.spark.driver_memory)):
        if not re.fullmatch(r"[1-9][0-9]*[kmg]?", size.strip().lower()):
            raise bad(key, f"must be a size such as 64m, 512k or 1g, not {size!r}")
    if not 0 <= config.silver.critical_max_unexpected_percent <= 100:
        raise bad("silver.critical_max_unexpected_percent", "must be between 0 and 100")
    if config.lineage.http_url and "://" not in config.lineage.http_url:
        raise bad("lineage.http_url", "must be a URL such as http://marquez:5000")
    if config.lineage.file and "://" in config.lineage.dir:
        raise bad("lineage.dir", "must be a local folder (the file transport writes there)")
    if config.lineage.http_timeout_seconds <= 0:
        raise bad("lineage.http_timeout_seconds", "must be positive")
    if config.retention.audit_window_hours < 0:
        raise bad("retention.audit_window_hours", "must be zero or positive")
    if config.spark.shuffle_partitions <= 0:
        raise bad("spark.shuffle_partitions", "must be positive")
    if config.observe.flush_seconds <= 0:
        raise bad("observe.flush_seconds", "must be positive")
    if not 0 <= config.observe.metrics_port <= 65535:
        raise bad("observe.metrics_port", "must be a TCP port, or 0 (off)")
    slo = config.slo
    for key, value in (("slo.window_minutes", slo.window_minutes),
                       ("slo.freshness_p95_seconds", slo.freshness_p95_seconds)):
        if value <= 0:
            raise bad(key, "must be positive")
    for key, value in (("slo.pass_rate_min", slo.pass_rate_min),
                       ("slo.duplicate_rate_max", slo.duplicate_rate_max)):
        if not 0 <= value <= 1:
            raise bad(key, f"must be a share between 0 and 1 (e.g. 0.995), not {value}")
    if slo.lag_p95_records < 0:
        raise bad("slo.lag_p95_records", "must be zero or positive")
    for name, source in config.sources.items():
        if source.partitions < 0:
            raise bad(f"sources.{name}.partitions", "must be positive (0: the contract's)")
        if source.replication_factor <= 0:
            raise bad(f"sources.{name}.replication_factor", "must be positive")
        if source.max_offsets_per_trigger < 0:
            raise bad(f"sources.{name}.max_offsets_per_trigger", "must be 0 (default) or more")
        if source.format and source.format not in FORMATS:
            raise bad(f"sources.{name}.format", f"must be one of {', '.join(FORMATS)}, not "
                      f"{source.format!r}")
    registry = config.schema_registry
    if not registry.url.startswith(("http://", "https://")):
        raise bad("schema_registry.url", "must be an http(s) URL, e.g. "
                  "http://127.0.0.1:18081/apis/ccompat/v7")
    if registry.compatibility.upper() not in COMPATIBILITY_LEVELS:
        raise bad("schema_registry.compatibility", f"must be one of "
                  f"{', '.join(COMPATIBILITY_LEVELS)}, not {registry.compatibility!r}")
    if registry.embedded.startup_timeout_seconds <= 0:
        raise bad("schema_registry.embedded.startup_timeout_seconds", "must be positive")


def _is_uri(path: str) -> bool:
    return "://" in path


def _absolute(path: str) -> str:
    return path if _is_uri(path) else str(Path(path).expanduser().resolve())


T = TypeVar("T")


def _build(cls: type[T], data: Any, prefix: str, source_file: str) -> T:
    """Build dataclass ``cls`` from a YAML mapping, strictly."""
    where = prefix.rstrip(".") or "the top level"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LakehouseError(
            ErrorCode.CONFIG_BAD_VALUE,
            f"{source_file}: {where} must be a mapping, got {type(data).__name__}",
            file=source_file, key=prefix.rstrip("."))
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            raise LakehouseError(
                ErrorCode.CONFIG_UNKNOWN_KEY,
                f"{source_file}: unknown key '{prefix}{key}'",
                hint=f"allowed under {where}: {', '.join(sorted(k for k in fields if k != 'source_file'))}",
                file=source_file, key=f"{prefix}{key}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise LakehouseError(
                    ErrorCode.CONFIG_MISSING_KEY,
                    f"{source_file}: required key '{key}' is missing",
                    hint=f"add '{name}:' under {where}", file=source_file, key=key)
            continue
        values[name] = _coerce(hints[name], data[name], key, source_file)
    return cls(**values)


def _coerce(tp: Any, value: Any, key: str, source_file: str) -> Any:
    def bad(expected: str) -> LakehouseError:
        return LakehouseError(
            ErrorCode.CONFIG_BAD_VALUE,
            f"{source_file}: '{key}' must be {expected}, got {value!r}",
            file=source_file, key=key)

    if dataclasses.is_dataclass(tp):
        return _build(tp, value, f"{key}.", source_file)  # type: ignore[arg-type]
    origin = typing.get_origin(tp)
    if origin in (Mapping, dict) or tp is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise bad("a mapping")
        args = typing.get_args(tp)
        value_type = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(value_type, v, f"{key}.{k}", source_file) for k, v in value.items()}
    if origin is Sequence:
        if not isinstance(value, list):
            raise bad("a list")
        (item_type,) = typing.get_args(tp)
        return tuple(_coerce(item_type, v, f"{key}[{i}]", source_file)
                     for i, v in enumerate(value))
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise bad("a string")
    raise TypeError(f"unsupported config type {tp!r} for {key}")
