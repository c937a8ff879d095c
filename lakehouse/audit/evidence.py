"""``lakehouse audit export`` and ``check``: a table version as evidence an auditor takes
away and checks without trusting the people who run the lakehouse.

The bundle is one zip:

- ``rows.parquet`` and ``rows.csv``: the table as it was at that version;
- ``provenance.json``: ``lakehouse explain`` of the version, down to Kafka offsets;
- ``batches.json``: the ledger lines (bronze = silver + quarantined + duplicates) and the
  expectation results of every silver batch the version was built from;
- ``rules/<sha256>-<file>``: the contracts and suites those batches were routed with;
- ``lineage.jsonl``: the OpenLineage events of the runs that wrote those commits;
- ``chain.json``: the version's link in its table's chain (``lakehouse.io.chain``): its
  digest, which every later ``lakehouse audit verify`` must reach, and the digest of the
  table's whole content then;
- ``manifest.json``: what the bundle is (table, version, when, by which lakehouse) and the
  SHA-256 of every other file.

``check`` needs the zip alone (no Spark, no warehouse): every file is listed in the
manifest with its hash and every listed file is there unchanged. It prints the
manifest's own SHA-256, which ``export`` printed too: an auditor who noted it knows the
manifest is the one exported.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lakehouse import __version__, graph
from lakehouse.audit.explain import explain, table_commits
from lakehouse.audit.timetravel import AsOf, open_as_of
from lakehouse.batch import RUN_ID
from lakehouse.catalog import split_name
from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.chain import read_link
from lakehouse.lineage.graph import read_events
from lakehouse.quality.in_force import CONTRACT_SHA256, SUITE_SHA256, archived

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Exported:
    """What ``export`` wrote."""

    path: Path
    table: str
    version: int
    rows: int
    files: dict[str, str]
    """Bundle file -> SHA-256."""
    manifest_sha256: str

    def describe(self) -> str:
        return (f"{self.table} version {self.version}: {self.rows:,} rows, {len(self.files)} "
                f"files -> {self.path}\nmanifest sha256 {self.manifest_sha256} (note it: "
                f"`lakehouse audit check` prints the same for an unchanged bundle)")


def export(pipeline: graph.Graph, table: str, as_of: AsOf | None, output: Path) -> Exported:
    """Write the evidence bundle of ``table`` at ``as_of`` (default: its latest version)."""
    config = pipeline.config
    opts = dict(config.warehouse.storage_options)
    walked = explain(pipeline, table, as_of)
    rows = open_as_of(config, table, walked.version).to_pyarrow_table()
    files: dict[str, bytes] = {"rows.parquet": _parquet(rows), "rows.csv": _csv(rows),
                               "provenance.json": _json(walked.to_json())}
    silver = next((h for h in walked.hops if split_name(h.table)[0] == "silver"), None)
    bronze = walked.hops[-1]
    run_ids = {str(c.metadata[RUN_ID]) for v, c in table_commits(
        pipeline.node(table).uri, opts).items() if v <= walked.version and RUN_ID in c.metadata}
    if silver is not None:
        commits = {v: c for v, c in table_commits(pipeline.node(silver.table).uri, opts).items()
                   if v <= silver.upto}
        run_ids |= {str(c.metadata[RUN_ID]) for c in commits.values() if RUN_ID in c.metadata}
        files["batches.json"] = _json(_batches(pipeline, silver.table, bronze.upto))
        pairs = {(c.metadata[CONTRACT_SHA256], c.metadata[SUITE_SHA256])
                 for c in commits.values() if CONTRACT_SHA256 in c.metadata}
        kept = archived(config.warehouse.table_uri("_system", "rules"), opts,
                        sorted({h for pair in pairs for h in pair}))
        for f in kept.values():
            files[f"rules/{f.sha256}-{f.name}"] = f.text.encode("utf-8")
    events = [e for e in read_events(config.lineage_file, config.listener_file)
              if _run_ids(e) & run_ids]
    files["lineage.jsonl"] = "".join(json.dumps(e, sort_keys=True) + "\n"
                                     for e in events).encode("utf-8")
    link = read_link(pipeline.node(table).uri, walked.version)
    files["chain.json"] = _json({"link": None if link is None else asdict(link)})
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
    manifest = _json({"table": table, "version": walked.version,
                      "committed_at": walked.committed_at,
                      "exported_at": datetime.now(UTC).isoformat(), "lakehouse": __version__,
                      "rows": rows.num_rows, "files": hashes})
    _write_zip(output, {**files, MANIFEST: manifest})
    return Exported(output, table, walked.version, rows.num_rows, hashes,
                    hashlib.sha256(manifest).hexdigest())


@dataclass(frozen=True)
class Checked:
    """What ``check`` found in an unchanged bundle."""

    table: str
    version: int
    files: int
    manifest_sha256: str

    def describe(self) -> str:
        return (f"evidence of {self.table} version {self.version}: {self.files} files, each "
                f"as exported\nmanifest sha256 {self.manifest_sha256}")


def check(path: Path) -> Checked:
    """Verify a bundle from the zip alone; LH-AUDIT-003 naming the first file that was
    changed, added or removed."""
    try:
        with zipfile.ZipFile(path) as bundle:
            contents = {n: bundle.read(n) for n in bundle.namelist() if not n.endswith("/")}
    except (OSError, zipfile.BadZipFile) as exc:
        raise LakehouseError(ErrorCode.AUDIT_BUNDLE_ALTERED, f"{path} is not a readable zip: "
                             f"{exc}", hint="ask for the bundle again", file=str(path)) from None
    if MANIFEST not in contents:
        raise _altered(path, MANIFEST, "is missing")
    try:
        manifest = json.loads(contents.pop(MANIFEST))
        listed: Mapping[str, str] = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise _altered(path, MANIFEST, "is not the manifest export writes") from None
    for name in sorted(set(listed) | set(contents)):
        if name not in contents:
            raise _altered(path, name, "is listed in the manifest but missing")
        if name not in listed:
            raise _altered(path, name, "is not in the manifest")
        if hashlib.sha256(contents[name]).hexdigest() != listed[name]:
            raise _altered(path, name, "differs from the manifest's SHA-256")
    with zipfile.ZipFile(path) as bundle:
        manifest_sha = hashlib.sha256(bundle.read(MANIFEST)).hexdigest()
    return Checked(str(manifest["table"]), int(manifest["version"]), len(listed), manifest_sha)


def _altered(path: Path, name: str, what: str) -> LakehouseError:
    return LakehouseError(ErrorCode.AUDIT_BUNDLE_ALTERED, f"{path}: {name} {what}",
                          hint="the bundle was changed after export; ask for it again and "
                               "compare the manifest sha256 with the one noted at export",
                          file=name)


def _batches(pipeline: graph.Graph, silver: str, upto: int) -> dict[str, Any]:
    """The ledger lines and expectation results of the batches of ``silver`` that routed
    bronze versions up to ``upto`` (those a version of it, or of gold over it, holds: a
    batch that added nothing to silver still counts what it quarantined)."""
    from lakehouse.io.delta_log import open_table
    config = pipeline.config
    opts = dict(config.warehouse.storage_options)
    ledger_table = open_table(config.warehouse.table_uri("silver", "_batches"), opts)
    quality_table = open_table(config.warehouse.table_uri("silver", "_quality"), opts)
    if ledger_table is None:
        return {"ledger": [], "quality": []}
    ledger = ledger_table.to_pyarrow_dataset().to_table(
        filter=(pc.field("table") == silver) & (pc.field("bronze_to_version") <= upto))
    keys = {(r["app_id"], r["batch_id"]) for r in ledger.select(["app_id", "batch_id"])
            .to_pylist()}
    quality = [] if quality_table is None else [
        r for r in quality_table.to_pyarrow_dataset().to_table(
            filter=pc.field("table") == silver).to_pylist() if (r["app_id"], r["batch_id"]) in keys]
    return {"table": silver, "bronze_upto_version": upto, "ledger": ledger.to_pylist(),
            "quality": quality}


def _run_ids(event: Mapping[str, Any]) -> set[str]:
    run = event.get("run") or {}
    parent = ((run.get("facets") or {}).get("parent") or {}).get("run") or {}
    return {str(i) for i in (run.get("runId"), parent.get("runId")) if i}


def _parquet(rows: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(rows, sink)
    return sink.getvalue()


def _csv(rows: pa.Table) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(rows.column_names)
    for r in rows.to_pylist():
        writer.writerow([_cell(v) for v in r.values()])
    return text.getvalue().encode("utf-8")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=True, default=str) + "\n").encode("utf-8")


def _write_zip(output: Path, files: Mapping[str, bytes]) -> None:
    """The bundle, written beside ``output`` first and then moved in place."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
    partial.replace(output)
