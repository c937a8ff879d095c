"""The Avro sources' schemas in the registry, and contract changes checked before deploy.

A source's contract is ``expectations/<source>.contract.yaml``; for an Avro source its
schema is derived from it (``lakehouse.quality.avro``) and ``publish`` registers it under
``<topic>-value`` with the configured compatibility level set on the subject, so the
registry refuses a producer's (or a new contract's) schema the level forbids.

``check`` compares each contract of the working tree with the deployed one, either the
same file at a git ref or the subject's registered schemas, and lists what the level
forbids, naming the field and the rule: ``lakehouse contract check`` and CI run it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakehouse.config import CONTRACT_SUFFIX, Config
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.generator import AVRO_FAULTS, JSON, Encoding
from lakehouse.io.schema_registry import SchemaRegistry
from lakehouse.quality.avro import (
    Breach,
    avro_schema,
    breaches,
    contract_types,
    subject,
    to_datum,
)
from lakehouse.quality.contract import Contract, Field, load_contract, parse_contract

REGISTRY = "registry"
"""``--against registry``: compare with the subjects' registered schemas."""
CONTRACT_TYPES = ("string", "integer", "number", "boolean", "timestamp")


def source_contract(config: Config, source: str) -> Contract:
    """The contract of a source's events (``<expectations>/<source>.contract.yaml``)."""
    return load_contract(Path(config.expectations_dir) / f"{source}{CONTRACT_SUFFIX}")


@dataclass(frozen=True)
class Published:
    """A source's schema as the registry holds it."""

    source: str
    subject: str
    schema_id: int


def publish(config: Config, sources: Sequence[str]) -> list[Published]:
    """Register each Avro source's schema (its subject's level set first); LH-REGISTRY-003
    names the subject when the registry refuses one."""
    registry = registry_for(config)
    level = config.schema_registry.compatibility.upper()
    out = []
    for name in sources:
        source = config.source(name)
        if source.format != "avro":
            continue
        schema = avro_schema(source_contract(config, name))
        out.append(Published(name, subject(source.topic),
                             registry.publish(subject(source.topic), schema, level)))
    return out


@dataclass(frozen=True)
class ContractCheck:
    """One contract compared with its deployed version."""

    name: str
    against: str
    level: str
    status: str
    """``compatible`` | ``breaks`` | ``new`` (nothing deployed to compare with) | ``json``
    (``--against registry`` for a source that is not Avro)"""
    breaches: tuple[Breach, ...] = field(default_factory=tuple)

    def describe(self) -> list[str]:
        """Lines for humans."""
        if self.status == "new":
            return [f"{self.name}: new (not in {self.against}), nothing to compare"]
        if self.status == "json":
            return [f"{self.name}: not an Avro source, no schema in the registry to compare"]
        if self.status == "compatible":
            return [f"{self.name}: compatible with {self.against} under {self.level}"]
        return [f"{self.name}: {len(self.breaches)} change(s) {self.level} forbids against "
                f"{self.against}:", *(f"  - {b.describe()}" for b in self.breaches)]


def check(config: Config, against: str, level: str | None = None) -> list[ContractCheck]:
    """Every contract of the working tree against ``against`` (a git ref, or ``registry``
    for the Avro sources' subjects), under ``level`` (default: the configured one)."""
    level = (level or config.schema_registry.compatibility).upper()
    folder = Path(config.expectations_dir)
    files = sorted(folder.glob(f"*{CONTRACT_SUFFIX}"))
    if not files:
        raise LakehouseError(ErrorCode.CONTRACT_INVALID, f"no contracts in {folder}",
                             hint="contracts are expectations/<name>.contract.yaml")
    out = []
    for path in files:
        contract = load_contract(path)
        new = avro_schema(contract)
        if against == REGISTRY:
            name = path.name.removesuffix(CONTRACT_SUFFIX)
            if name not in config.source_names or config.source(name).format != "avro":
                out.append(ContractCheck(contract.name, against, level, "json"))
                continue
            deployed = _registered(config, contract.name, level)
        else:
            text = _at_ref(path, against)
            deployed = [] if text is None else [
                avro_schema(parse_contract(text, f"{against}:{path.name}"))]
        if not deployed:
            out.append(ContractCheck(contract.name, against, level, "new"))
            continue
        found = column_changes(contract_types(deployed[-1]), contract)
        for old in deployed:
            found += [b for b in breaches(old, new, level)
                      if b.field not in {f.field for f in found}]
        out.append(ContractCheck(contract.name, against, level,
                                 "breaks" if found else "compatible", tuple(found)))
    return out


def column_changes(old: Mapping[str, str], new: Contract) -> list[Breach]:
    """Fields whose type changed (``old``: field -> contract type, as deployed): silver
    keeps its columns' types whatever the level (a run refuses such a contract with
    LH-CONTRACT-002), so no promotion is allowed here."""
    out = []
    for fld in new.fields:
        before = old.get(fld.name)
        if before is None or not (before in CONTRACT_TYPES or before.startswith("decimal(")):
            continue  # not a field silver could have held as a column
        if Field(fld.name, before).spark_type != fld.spark_type:
            out.append(Breach(fld.name, "type_changed",
                              f"type changed from {before} to {fld.type}: silver's column "
                              f"keeps its type (a run refuses this contract, "
                              f"LH-CONTRACT-002)"))
    return out


def _registered(config: Config, source: str, level: str) -> list[dict[str, Any]]:
    """The schemas the new one must be compatible with: the subject's newest, or every
    version for a transitive level (none if nothing is registered)."""
    registry = registry_for(config)
    name = subject(config.source(source).topic)
    if level.endswith("_TRANSITIVE"):
        return [json.loads(text) for _, text in sorted(registry.writers(name).items())]
    latest = registry.latest(name)
    return [] if latest is None else [latest]


def _at_ref(path: Path, ref: str) -> str | None:
    """The file's text at git ``ref`` (None if it did not exist there)."""
    folder = path.resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                                  text=True, check=False)
        except FileNotFoundError as exc:
            raise LakehouseError(ErrorCode.BAD_ARGUMENTS, "git is not installed",
                                 hint="--against registry compares with the registry") from exc

    top = git("rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise LakehouseError(ErrorCode.BAD_ARGUMENTS,
                             f"{folder} is not in a git repository: no {ref} to compare with",
                             hint="compare with the registry instead: --against registry")
    if git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        raise LakehouseError(ErrorCode.BAD_ARGUMENTS, f"git knows no commit {ref!r}",
                             hint="name a branch, tag or commit, e.g. --against origin/main")
    relative = path.resolve().relative_to(Path(top.stdout.strip()).resolve())
    shown = git("show", f"{ref}:{relative.as_posix()}")
    return shown.stdout if shown.returncode == 0 else None


def avro_encoding(config: Config, source: str) -> Encoding:
    """Events of an Avro source as its producers write them: confluent-kafka's
    ``AvroSerializer`` with the contract's schema (published first, so the serializer only
    looks its id up)."""
    publish(config, [source])
    contract = source_contract(config, source)
    serialize = registry_for(config).avro_serializer(config.source(source).topic,
                                                     avro_schema(contract))

    def encode(event: dict[str, Any]) -> bytes:
        return serialize(to_datum(event, contract))

    return Encoding(encode, AVRO_FAULTS, b"application/vnd.apache.avro")


def encoding_for(config: Config, source: str, fmt: str | None = None) -> Encoding:
    """How a source's values are written: its configured format unless ``fmt`` says."""
    fmt = fmt or config.source(source).format
    return avro_encoding(config, source) if fmt == "avro" else JSON


def registry_for(config: Config) -> SchemaRegistry:
    """The configured registry's client."""
    return SchemaRegistry(config.schema_registry.url, config.schema_registry.client_properties)
