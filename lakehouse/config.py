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

``Config`` and its sections (``lakehouse.settings``) are frozen pydantic dataclasses:
unknown keys, missing required keys, wrongly typed values and values out of bounds fail
here, before Spark starts, with an error naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.certificates import Authority
from lakehouse.io.object_store import bucket_of
from lakehouse.io.storage import join, reach
from lakehouse.quality.contract import COMPATIBILITY_LEVELS as COMPATIBILITY_LEVELS
from lakehouse.quality.contract import FORMATS as FORMATS
from lakehouse.quality.contract import load_contract
from lakehouse.settings import SHAPES as SHAPES
from lakehouse.settings import (
    GoldConfig,
    KafkaConfig,
    LineageConfig,
    ObserveConfig,
    PrivacyConfig,
    RetentionConfig,
    SchemaRegistryConfig,
    SilverConfig,
    SloConfig,
    SourceConfig,
    Sources,
    SourceSettings,
    SparkConfig,
    StorageConfig,
    StreamingConfig,
    WarehouseConfig,
)
from lakehouse.validation import FILE, MISSING_KEY, UNKNOWN_KEY, problems

DEFAULT_CONF = "conf/local.yaml"
ENV_CONF = "LAKEHOUSE_CONF"
ENV_BOOTSTRAP = "LAKEHOUSE_KAFKA_BOOTSTRAP"
ENV_WAREHOUSE = "LAKEHOUSE_WAREHOUSE"
ENV_LINEAGE_DISABLED = "LAKEHOUSE_LINEAGE_DISABLED"
ENV_REGISTRY = "LAKEHOUSE_SCHEMA_REGISTRY_URL"
CONTRACT_SUFFIX = ".contract.yaml"


@dataclass(frozen=True, config=FILE)
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
    storage: StorageConfig = field(default_factory=StorageConfig)
    sources: Sources = field(default_factory=dict)
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
        # OpenLineage's file transports (Python's and the Spark listener's) append to a
        # local file, which an object store cannot do: beside an object-store warehouse
        # the files stay on the driver's disk (the HTTP transport shares them).
        return _absolute(self.lineage.dir) if self.lineage.dir else self.local_dir("lineage")

    @property
    def registry_data_dir(self) -> str:
        """Where the embedded schema registry keeps its schemas."""
        return self.schema_registry.embedded.data_dir or self.local_dir("registry")

    @property
    def storage_data_dir(self) -> str:
        """Where the embedded object store keeps its objects (never inside an object-store
        warehouse: that is what it serves)."""
        return _absolute(self.storage.embedded.data_dir) if self.storage.embedded.data_dir \
            else self.local_dir("storage")

    def local_dir(self, name: str) -> str:
        """``<warehouse>/_<name>`` for a warehouse on local disk; beside one on an object
        store, ``./.lakehouse/<bucket>/<prefix>/_<name>`` (a server's files or an appended
        log need a disk; each warehouse keeps its own)."""
        root = self.warehouse.root
        if "://" in root:
            return _absolute(join(".lakehouse", root.split("://", 1)[1], f"_{name}"))
        return join(root, f"_{name}")

    @property
    def store_buckets(self) -> list[str]:
        """The object-store buckets holding the warehouse and its checkpoints (none for a
        warehouse on disk)."""
        return sorted({b for b in map(bucket_of, (self.warehouse.root,
                                                  self.warehouse.checkpoints)) if b})

    @property
    def storage_bucket(self) -> str:
        """The bucket of an ``s3a://bucket/prefix`` warehouse; ``lakehouse`` for a local
        one (what ``lakehouse storage up`` creates)."""
        return bucket_of(self.warehouse.root) or "lakehouse"

    @property
    def broker_data_dir(self) -> str:
        """Where the embedded broker keeps its data."""
        return self.kafka.embedded.data_dir or self.local_dir("broker")

    @property
    def tls_dir(self) -> str:
        """Where the warehouse's certificate authority and the embedded servers' and
        clients' certificates live (``lakehouse.io.certificates``)."""
        return self.local_dir("tls")

    @property
    def authority(self) -> Authority:
        """The warehouse's certificate authority, which issues the embedded servers' and
        their clients' certificates."""
        return Authority(Path(self.tls_dir))

    @property
    def registry_tls(self) -> bool:
        """Whether the schema registry is reached over TLS (an https URL)."""
        return self.schema_registry.url.startswith("https://")


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
    if isinstance(raw, dict):
        raw = {**_overridden(raw, env, bootstrap_servers, warehouse), "source_file": source_file}
    try:
        config = _CONFIG.validate_python(raw, context={"env": env})
    except ValidationError as exc:
        raise _error(exc, source_file) from None
    wh = config.warehouse
    root = _absolute(wh.root)
    checkpoints = _absolute(wh.checkpoints) if wh.checkpoints else join(root, "_checkpoints")
    # A warehouse on the object store: every delta-rs reader and writer reaches it with the
    # storage section's endpoint and key (warehouse.storage_options still win).
    config = _trusting_own_ca(dataclasses.replace(config, warehouse=dataclasses.replace(
        wh, root=root, checkpoints=checkpoints)))
    if not config.store_buckets:
        return config
    for bucket in config.store_buckets:  # and every file the project reads or writes there
        reach(bucket, config.storage.store)
    return dataclasses.replace(config, warehouse=dataclasses.replace(
        config.warehouse, storage_options={**config.storage.store.delta_rs_options(),
                                           **wh.storage_options}))


def _trusting_own_ca(config: Config) -> Config:
    """The clients of the embedded servers on TLS trusting the warehouse's authority unless
    the file names another CA."""
    ca = {"ssl.ca.location": str(config.authority.ca_file)}
    kafka, registry = config.kafka, config.schema_registry
    if kafka.embedded.enabled and kafka.embedded.tls:
        kafka = dataclasses.replace(kafka, client_properties={
            **ca, **kafka.client_properties})
    if registry.embedded.enabled and config.registry_tls:
        registry = dataclasses.replace(registry, client_properties={
            **ca, **registry.client_properties})
    return dataclasses.replace(config, kafka=kafka, schema_registry=registry)


_CONFIG = TypeAdapter(Config)
_REQUIRED = {"kafka": "bootstrap_servers", "warehouse": "root"}
"""Keys the file must have: an override replaces them, never supplies them."""


def _overridden(raw: dict[str, Any], env: Mapping[str, str], bootstrap_servers: str | None,
                warehouse: str | None) -> dict[str, Any]:
    """The document with the overrides written over it, before validation (an override is
    checked as the file's own value would be)."""
    patch: dict[str, Any] = {}
    bootstrap = bootstrap_servers or env.get(ENV_BOOTSTRAP)
    if bootstrap:
        # A cluster given from outside is used as it is: never start a broker for it.
        patch["kafka"] = {"bootstrap_servers": bootstrap, "embedded": {"enabled": False}}
    if env.get(ENV_REGISTRY):
        patch["schema_registry"] = {"url": env[ENV_REGISTRY], "embedded": {"enabled": False}}
    if warehouse or env.get(ENV_WAREHOUSE):
        patch["warehouse"] = {"root": warehouse or env[ENV_WAREHOUSE], "checkpoints": ""}
    if env.get(ENV_LINEAGE_DISABLED, "").strip().lower() in ("1", "true", "yes"):
        patch["lineage"] = {"enabled": False}
    return _merged(raw, {s: values for s, values in patch.items() if s not in _REQUIRED
                         or (isinstance(raw.get(s), dict) and _REQUIRED[s] in raw[s])})


def _merged(node: Any, values: Mapping[str, Any]) -> Any:
    """``values`` written over mapping ``node`` (None: an empty one); anything else is left
    as it is, for validation to refuse."""
    node = {} if node is None else node
    if not isinstance(node, dict):
        return node
    return {**node, **{k: _merged(node.get(k), v) if isinstance(v, dict) else v
                       for k, v in values.items()}}


def _error(exc: ValidationError, source_file: str) -> LakehouseError:
    """The first problem pydantic found, as the coded error naming the file and the key."""
    first = problems(exc)[0]
    key, where = first.key, ".".join(str(p) for p in first.loc[:-1]) or "the top level"
    if first.kind == "secret_not_set":
        name = first.facts["variable"]
        return LakehouseError(ErrorCode.SECRET_NOT_SET, f"{source_file}: {key} {first.message}",
                              hint=f"export {name}=... before running", file=source_file,
                              key=key, variable=name)
    code, hint = ErrorCode.CONFIG_BAD_VALUE, ""
    if first.kind == UNKNOWN_KEY:
        code, hint = ErrorCode.CONFIG_UNKNOWN_KEY, \
            f"allowed under {where}: {', '.join(first.allowed_keys(Config))}"
    elif first.kind == MISSING_KEY:
        code, hint = ErrorCode.CONFIG_MISSING_KEY, f"add '{first.loc[-1]}:' under {where}"
    return LakehouseError(code, f"{source_file}: {first.text}", hint=hint, file=source_file,
                          key=key)


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().resolve())
