"""The sections of a deployment's config file (``conf/*.yaml``), one frozen pydantic
dataclass each, with what each key may be (``lakehouse.config`` reads the file into
``Config``, which holds them).

A section written empty (``silver:`` and nothing under it) takes every default; a value is
checked where it is declared: its type (``StrictBool``, ``StrictInt``, ``StrictFloat``:
``"yes"`` is no bool), bounds (``Field(gt=...)``), literals, and the few checks no type
says (``must``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)
from pydantic.dataclasses import dataclass

from lakehouse.io.object_store import S3Store
from lakehouse.io.storage import join
from lakehouse.quality.contract import Compatibility, Format
from lakehouse.validation import EMPTY, FILE, Secrets, Size, Strings, Users, bad, must


def _one_key_file(values: Mapping[str, str]) -> Mapping[str, str]:
    """A client certificate's key and chain in one file: Java's PEM key store reads both
    from one (librdkafka finds each in it)."""
    key, cert = values.get("ssl.key.location"), values.get("ssl.certificate.location")
    if (key or cert) and key != cert:
        raise bad("Spark's Kafka client reads a client certificate's key and chain from one "
                  "PEM file: point ssl.key.location and ssl.certificate.location at the same "
                  "file (cat key.pem cert.pem ca.pem > client.pem; chmod 600 client.pem)",
                  at="ssl.key.location")
    return values


_HOST_PORT = re.compile(r"\s*\S+:\d+\s*")
SHAPES = ("tables", "chained")
"""How the streaming queries are laid out (``streaming.shape``)."""


@dataclass(frozen=True, config=FILE)
class _Section:
    """A section of the file; written empty (``silver:`` and nothing under it), every
    default."""

    @model_validator(mode="before")
    @classmethod
    def _empty(cls, data: Any) -> Any:
        return {} if data is None else data


@dataclass(frozen=True, config=FILE)
class EmbeddedBrokerConfig(_Section):
    """The Apache Kafka broker (KRaft) the project starts itself for local work and tests."""

    enabled: StrictBool = True
    data_dir: str = ""
    """Where the broker keeps its log; default ``<warehouse>/_broker``."""
    startup_timeout_seconds: StrictFloat = 30.0
    sasl_users: Users = field(default_factory=dict, repr=False)
    """SASL/PLAIN users and their passwords (write ``${ENV_VAR}`` to take one from the
    environment). None: the broker takes anyone, unauthenticated (unless ``tls``). Some:
    its listeners want SASL (SASL_PLAINTEXT, or SASL_SSL with ``tls``) and KRaft's
    ``StandardAuthorizer`` allows only what ``topic_acls`` grants."""
    tls: StrictBool = False
    """Every listener on TLS, with a certificate of the warehouse's own authority
    (``<warehouse>/_tls/ca.pem``, which clients trust by default) naming the broker's host:
    SASL_SSL with ``sasl_users``; without, SSL with client certificates, the ``CN`` of each
    being its user (``broker up`` issues ``<warehouse>/_tls/clients/<user>.pem`` for the admin and
    every user of ``topic_acls``)."""
    admin_user: str = "admin"
    """The user the broker itself and ``lakehouse broker`` act as, a super user: one of
    ``sasl_users``, or with ``tls`` and no users the CN of its client certificate."""
    topic_acls: Annotated[Mapping[str, Annotated[Sequence[str], AfterValidator(tuple)]],
                          EMPTY] = field(default_factory=dict)
    """User -> the topics it may create, describe, read and write (any consumer group)."""

    @model_validator(mode="after")
    def _users(self) -> EmbeddedBrokerConfig:
        if self.sasl_users and self.admin_user not in self.sasl_users:
            raise bad(f"{self.admin_user!r} is not one of kafka.embedded.sasl_users",
                      at="admin_user")
        if self.tls and not self.sasl_users and "broker" in {self.admin_user, *self.topic_acls}:
            raise bad("'broker' is the broker's own certificate (CN=broker, a super user): "
                      "name the user otherwise", at="topic_acls.broker"
                      if "broker" in self.topic_acls else "admin_user")
        for user in self.topic_acls:
            if self.sasl_users and user not in self.sasl_users:
                raise bad("names no user of kafka.embedded.sasl_users", at=f"topic_acls.{user}")
            if not self.sasl_users and not self.tls:
                raise bad("grants topics, but the broker authenticates no one: set "
                          "kafka.embedded.sasl_users or tls", at=f"topic_acls.{user}")
        return self


@dataclass(frozen=True, config=FILE)
class KafkaConfig(_Section):
    """How to reach Kafka. Only the Kafka protocol is used, so any cluster works."""

    bootstrap_servers: Annotated[str, must(
        lambda v: all(_HOST_PORT.fullmatch(s) for s in v.split(",")),
        "must be host:port, or several separated by commas")]
    embedded: EmbeddedBrokerConfig = field(default_factory=EmbeddedBrokerConfig)
    client_properties: Annotated[Secrets, AfterValidator(_one_key_file)] = \
        field(default_factory=dict, repr=False)
    """Extra librdkafka properties (security.protocol, sasl.*, ssl.*) for every client;
    write ``${ENV_VAR}`` for a secret (``sasl.password: ${KAFKA_PASSWORD}``). For TLS:
    ``ssl.ca.location`` (default, with the embedded broker: the warehouse's CA), and for a
    client certificate ``ssl.certificate.location`` and ``ssl.key.location`` naming one PEM
    file holding both (Spark's Java client reads them from one)."""
    unavailable_timeout_seconds: StrictFloat = Field(default=300.0, gt=0)
    """How long a running job waits for a broker that stopped answering (restarting its
    Kafka queries with backoff once it is back) before it stops with LH-KAFKA-004 and exit
    code 75."""


@dataclass(frozen=True, config=FILE)
class EmbeddedRegistryConfig(_Section):
    """The Apicurio Registry the project starts itself for local work and tests."""

    enabled: StrictBool = True
    data_dir: str = ""
    """Where it keeps its schemas (an H2 database file); default ``<warehouse>/_registry``."""
    startup_timeout_seconds: StrictFloat = Field(default=90.0, gt=0)
    users: Users = field(default_factory=dict, repr=False)
    """Users and passwords it wants by HTTP basic auth (write ``${ENV_VAR}``); none: it
    takes anyone. (An ``https://`` URL makes it serve TLS, with a certificate of the
    warehouse's authority.)"""


@dataclass(frozen=True, config=FILE)
class SchemaRegistryConfig(_Section):
    """The schema registry of the Avro sources (any registry serving the Confluent API)."""

    url: Annotated[str, must(lambda v: v.startswith(("http://", "https://")), "must be an "
                             "http(s) URL, e.g. http://127.0.0.1:18081/apis/ccompat/v7")] = \
        "http://127.0.0.1:18081/apis/ccompat/v7"
    embedded: EmbeddedRegistryConfig = field(default_factory=EmbeddedRegistryConfig)
    compatibility: Annotated[Compatibility, BeforeValidator(
        lambda v: v.upper() if isinstance(v, str) else v)] = "BACKWARD"
    """The level the project sets on every subject it owns (registering a schema enforces
    nothing until one is set): BACKWARD lets consumers upgrade first; FULL also keeps old
    readers working."""
    client_properties: Secrets = field(default_factory=dict, repr=False)
    """confluent-kafka's registry client settings (``basic.auth.user.info:
    user:${PASSWORD}``, ``ssl.ca.location``: default, with the embedded registry on https,
    the warehouse's CA); write ``${ENV_VAR}`` for a secret."""


@dataclass(frozen=True, config=FILE)
class EmbeddedStoreConfig(_Section):
    """The S3-compatible store (SeaweedFS) the project starts itself with ``lakehouse
    storage up``, to try a warehouse on object storage on a laptop, and for the tests."""

    enabled: StrictBool = True
    data_dir: str = ""
    """Where it keeps its objects; default ``<warehouse>/_storage`` for a local
    warehouse, else ``./.lakehouse/<bucket>/<prefix>/_storage``."""
    startup_timeout_seconds: StrictFloat = Field(default=30.0, gt=0)


@dataclass(frozen=True, config=FILE)
class StorageConfig(_Section):
    """The S3-compatible object store of a warehouse at ``s3a://bucket/prefix``."""

    endpoint: Annotated[str, must(lambda v: v.startswith(("http://", "https://")),
                                  "must be an http(s) URL, e.g. http://127.0.0.1:18333")] = \
        "http://127.0.0.1:18333"
    region: str = "us-east-1"
    path_style: StrictBool = True
    """Requests name the bucket in the path, as SeaweedFS, MinIO and most on-premises
    stores want; false: in the host name (AWS's virtual-hosted style)."""
    credentials: Secrets = field(default_factory=dict, repr=False)
    """``access_key`` and ``secret_key``; write ``${ENV_VAR}`` to take them from the
    environment. None: the clients' own credential chain (environment, instance role)."""
    embedded: EmbeddedStoreConfig = field(default_factory=EmbeddedStoreConfig)

    @model_validator(mode="after")
    def _keys(self) -> StorageConfig:
        unknown = set(self.credentials) - {"access_key", "secret_key"}
        if unknown:
            raise bad("takes access_key and secret_key only", at=f"credentials.{min(unknown)}")
        return self

    @property
    def store(self) -> S3Store:
        """The store as the clients reach it."""
        return S3Store(self.endpoint, self.region, self.credentials.get("access_key"),
                       self.credentials.get("secret_key"), self.path_style)


@dataclass(frozen=True, config=FILE)
class WarehouseConfig(_Section):
    """Where tables and streaming checkpoints live (local path or object-store URI)."""

    root: str
    checkpoints: str = ""
    """Default ``<root>/_checkpoints``."""
    storage_options: Strings = field(default_factory=dict, repr=False)
    """Passed to delta-rs (e.g. AWS_REGION, AWS_ENDPOINT_URL); for a warehouse on the
    object store, written over what ``storage:`` gives (its key among them: never
    printed)."""

    def table_uri(self, layer: str, name: str) -> str:
        """The storage URI of table ``layer.name``."""
        return join(self.root, layer, name)

    def checkpoint_uri(self, query_name: str) -> str:
        """The Spark checkpoint location of one streaming query."""
        return join(self.checkpoints, query_name)


@dataclass(frozen=True, config=FILE)
class SparkConfig(_Section):
    """The SparkSession the jobs build (ignored where spark-submit already made one)."""

    master: str = "local[2]"
    app_name: str = "lakehouse"
    shuffle_partitions: StrictInt = Field(default=2, gt=0)
    driver_memory: Size = "4g"
    """Heap of the driver JVM (Spark's ``spark.driver.memory``); with a ``local`` master
    the executors run inside it too. Set when the project starts the JVM; under
    spark-submit, ``--driver-memory`` decides."""
    driver_java_options: str = ""
    """JVM options of the driver, set when the project starts the JVM. Nothing by
    default. ``-XX:TieredStopAtLevel=1`` (the JIT's quick tier only) runs a small job
    in 52 s instead of 122 s on two cores, but with it the driver's SparkContext stopped
    or the JVM vanished mid-run in three of three CI runs of the suite (never without it),
    so it is a measured option, not the default."""
    conf: Strings = field(default_factory=dict)


@dataclass(frozen=True, config=FILE)
class StreamingConfig(_Section):
    """Defaults shared by every streaming query."""

    trigger_seconds: StrictFloat = Field(default=2.0, ge=0)
    max_offsets_per_trigger: StrictInt = Field(default=250_000, gt=0)
    """Records per bronze micro-batch at most: each batch has a fixed cost (a Delta
    commit, planning, code generation), so a backlog drains faster in fewer, bigger
    batches; at a steady rate batches stay as small as the trigger interval makes them."""
    starting_offsets: Annotated[str, must(
        lambda v: v in ("earliest", "latest") or v.lstrip().startswith("{"),
        "must be earliest, latest or a JSON offsets map")] = "earliest"
    fail_on_data_loss: StrictBool = True
    min_partitions: StrictInt = 0
    """Spark's ``minPartitions``: split Kafka partitions into at least this many tasks
    (0: one task per Kafka partition)."""
    shape: Annotated[str, must(lambda v: v in SHAPES, f"must be one of {', '.join(SHAPES)}")] = \
        "chained"
    """``chained``: one query per source; each micro-batch lands bronze, then routes it
    into silver, then merges that into gold (``lakehouse.layers.chain``): a record waits for one
    trigger, not one per layer. ``tables``: one streaming query per table, each with its
    own checkpoint and trigger (tables restart and replay on their own)."""


@dataclass(frozen=True, config=FILE)
class SilverConfig(_Section):
    """How silver reads bronze and enforces contracts and expectations."""

    expectations_dir: str = ""
    """Contracts and GX suites (``<table>.contract.yaml``, ``<table>.suite.json``);
    default: the project's ``expectations/`` folder."""
    max_bytes_per_trigger: Size = "64m"
    """Bronze data per silver micro-batch (Delta's ``maxBytesPerTrigger``: a soft cap,
    at least one file)."""
    critical_max_unexpected_percent: StrictFloat = Field(default=5.0, ge=0, le=100)
    """A critical expectation failing on more than this share of a batch stops the query
    (an expectation's ``meta.max_unexpected_percent`` overrides it)."""


@dataclass(frozen=True, config=FILE)
class GoldConfig(_Section):
    """How gold reads silver."""

    max_bytes_per_trigger: Size = "64m"
    """Silver data per gold micro-batch (Delta's ``maxBytesPerTrigger``: a soft cap, at
    least one file)."""


@dataclass(frozen=True, config=FILE)
class LineageConfig(_Section):
    """Where the OpenLineage events of every run and micro-batch go.

    Transports: a JSON-lines file (on by default), HTTP to a lineage server speaking the
    OpenLineage API such as Marquez (when ``http_url`` is set), the console (debugging).
    Emission runs off the batch's path; a transport that fails is logged, never raised.
    """

    enabled: StrictBool = True
    namespace: str = ""
    """The jobs' namespace; default: the project name."""
    file: StrictBool = True
    dir: str = ""
    """Where the file transport writes, a local folder (default ``<warehouse>/_lineage``):
    ``spark.jsonl`` from the Spark listener, ``lakehouse.jsonl`` from the project."""
    http_url: Annotated[str, must(lambda v: not v or "://" in v,
                                  "must be a URL such as http://marquez:5000")] = ""
    """e.g. ``http://marquez:5000``; events are POSTed to ``<http_url>/<http_endpoint>``."""
    http_endpoint: str = "api/v1/lineage"
    http_api_key: str = ""
    http_timeout_seconds: StrictFloat = Field(default=5.0, gt=0)
    console: StrictBool = False

    @model_validator(mode="after")
    def _local_dir(self) -> LineageConfig:
        if self.file and "://" in self.dir:
            raise bad("must be a local folder (the file transport writes there)", at="dir")
        return self


@dataclass(frozen=True, config=FILE)
class RetentionConfig(_Section):
    """How long old table versions stay readable."""

    audit_horizon_days: StrictFloat = Field(default=7.0, gt=0)
    """Auditors can read every table as it was this far back: every table's Delta
    retention (``delta.logRetentionDuration``, ``delta.deletedFileRetentionDuration``) is
    set to it, and ``lakehouse vacuum`` never removes what it keeps (``forget``, the
    erasure, is the one exception)."""
    tamper_evidence: StrictBool = True
    """Link every commit in its table's chain (``lakehouse audit verify``): a digest of
    the rows each commit adds, computed as it writes them. Off only to measure its cost
    (``lakehouse bench``); the next linking write catches up from the files."""

    @property
    def horizon_hours(self) -> int:
        """The horizon in whole hours (Delta's unit), rounded up."""
        return math.ceil(self.audit_horizon_days * 24)

    @property
    def delta_properties(self) -> dict[str, str]:
        """The Delta table properties that keep versions readable back to the horizon."""
        interval = f"interval {self.horizon_hours} hours"
        return {"delta.logRetentionDuration": interval,
                "delta.deletedFileRetentionDuration": interval}


@dataclass(frozen=True, config=FILE)
class PrivacyConfig(_Section):
    """The key of the pseudonyms silver holds for the contracts' ``pii: true`` fields."""

    key_env: str = "LAKEHOUSE_PII_KEY"
    """The environment variable holding the HMAC-SHA256 key; a run that pseudonymises
    refuses to start without it (LH-CONF-008)."""
    dev_key: str = field(default="", repr=False)
    """A key for local work only (conf/local.yaml sets a documented one, which is no
    secret): used when the variable is unset. Never set it in a real deployment."""


@dataclass(frozen=True, config=FILE)
class ObserveConfig(_Section):
    """The event log of every micro-batch, and the Prometheus endpoint."""

    events: StrictBool = True
    """Append one row per micro-batch to ``_system.events`` (``lakehouse status``,
    ``slo`` and ``report`` read it)."""
    flush_seconds: StrictFloat = Field(default=5.0, gt=0)
    """How often the rows are written (one Delta commit each time there are rows)."""
    metrics_port: StrictInt = Field(default=0, ge=0, le=65535)
    """Serve the figures in the Prometheus text format at ``http(s)://<host>:<port>/metrics``
    while ``lakehouse run`` runs; 0: off."""
    metrics_host: str = "127.0.0.1"
    """The address it binds: the loopback only, unless set (``0.0.0.0``: every interface;
    then set ``metrics_users`` or ``metrics_certificate``, or both)."""
    metrics_users: Users = field(default_factory=dict, repr=False)
    """Users and passwords a scrape must give by HTTP basic auth (write ``${ENV_VAR}``);
    none: anyone who reaches the port reads the figures."""
    metrics_certificate: str = ""
    """A PEM file holding the endpoint's private key and certificate chain: serve HTTPS
    (``https://<host>:<port>/metrics``) instead of HTTP."""


@dataclass(frozen=True, config=FILE)
class SloConfig(_Section):
    """Service-level objectives, judged over the event log's last ``window_minutes``
    (``lakehouse slo``). An objective is breached when its error budget burns faster than
    the window allows (burn rate above 1)."""

    window_minutes: StrictFloat = Field(default=60.0, gt=0)
    freshness_p95_seconds: StrictFloat = Field(default=60.0, gt=0)
    """95% of gold batches commit their records within this long of the events (their
    p95 event -> gold latency)."""
    pass_rate_min: StrictFloat = Field(default=0.995, ge=0, le=1)
    """Share of records meeting the contract and suite (the rest is quarantined)."""
    duplicate_rate_max: StrictFloat = Field(default=0.0, ge=0, le=1)
    """Share of silver's records whose event id silver holds more than once."""
    lag_p95_records: StrictInt = Field(default=10_000, ge=0)
    """95% of the Kafka queries' batches end this close to the topic's end."""


@dataclass(frozen=True, config=FILE)
class SourceSettings(_Section):
    """A deployment's settings of one source (``sources.<name>``), where they differ from
    what its contract declares (``<expectations>/<name>.contract.yaml``)."""

    enabled: StrictBool = True
    """False: this deployment does not run the source; its tables are skipped, said so."""
    topic: str = ""
    """Empty: the contract's topic."""
    partitions: StrictInt = Field(default=0, ge=0)
    """0: the contract's (the topic's partitions when the project creates it)."""
    format: Literal["", Format] = ""
    """Empty: the contract's (``json`` or ``avro``)."""
    replication_factor: StrictInt = Field(default=1, gt=0)
    max_offsets_per_trigger: StrictInt = Field(default=0, ge=0)
    """0 means the streaming default."""


@dataclass(frozen=True, config=FILE)
class SourceConfig:
    """One source as this deployment runs it: its contract's declaration with the
    config's settings applied. Its records land in the bronze table of the same name."""

    name: str
    topic: str
    partitions: int
    replication_factor: int = 1
    max_offsets_per_trigger: int = 0
    """0 means the streaming default."""
    format: Format = "json"
    """``json`` (one JSON object per value) or ``avro`` (Confluent wire format, its schema
    derived from the contract and registered under ``<topic>-value``)."""


Sources = Annotated[Mapping[str, SourceSettings], EMPTY]
