"""The one filesystem layer: local paths and object-store URIs alike (pyarrow.fs).

Warehouse roots, tables and checkpoints are strings that may be local paths
(``./warehouse``) or URIs (``s3a://bucket/shop``, ``file:///...``). Spark's Hadoop
filesystems call S3 ``s3a``; pyarrow calls it ``s3``: both name the same objects. A
bucket's store (endpoint and key) is the one ``reach`` was given for it, as the config
names it (``lakehouse.config`` does so when it reads a warehouse on an object store);
another bucket is reached with the AWS SDK's own chain (environment, instance role).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from functools import cache

import pyarrow.fs as pafs

from lakehouse.io.object_store import S3_SCHEMES, S3Store

_SCHEMES = {"s3a": "s3", "s3n": "s3"}
_STORES: dict[str, S3Store] = {}


def reach(bucket: str, store: S3Store) -> None:
    """Reach ``bucket`` through ``store`` from now on."""
    _STORES[bucket] = store


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding ``uri`` and the path inside it."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    scheme, rest = uri.split("://", 1)
    bucket = rest.split("/", 1)[0]
    if scheme in S3_SCHEMES and bucket in _STORES:
        return _client(_STORES[bucket]), rest.rstrip("/")
    return pafs.FileSystem.from_uri(f"{_SCHEMES.get(scheme, scheme)}://{rest}")


def delta_options(uri: str) -> dict[str, str]:
    """delta-rs's storage options for the table at ``uri``: its bucket's store, as
    ``reach`` was given it (none on local disk)."""
    if "://" not in uri:
        return {}
    scheme, rest = uri.split("://", 1)
    store = _STORES.get(rest.split("/", 1)[0])
    return store.delta_rs_options() if scheme in S3_SCHEMES and store else {}


@cache
def _client(store: S3Store) -> pafs.FileSystem:
    return store.filesystem()


def join(root: str, *parts: str) -> str:
    """``root/part/...`` for a path or a URI."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


def exists(uri: str) -> bool:
    """Whether there is a file or directory at ``uri``."""
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def missing(uris: Sequence[str]) -> list[str]:
    """Those of ``uris`` (files of one filesystem, e.g. one table's) that do not exist."""
    if not uris:
        return []
    fs, _ = filesystem(uris[0])
    infos = fs.get_file_info([filesystem(u)[1] for u in uris])
    return [u for u, i in zip(uris, infos, strict=True) if i.type == pafs.FileType.NotFound]


def is_dir(uri: str) -> bool:
    """Whether ``uri`` is a directory (on an object store: a non-empty prefix)."""
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def sub_dirs(uri: str) -> list[str]:
    """The names of the directories directly under ``uri``, sorted (none if it is absent)."""
    fs, path = filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def file_names(uri: str) -> list[str]:
    """The names of the files directly under ``uri``, sorted (none if it is absent)."""
    fs, path = filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)


def read_text(uri: str, errors: str = "strict") -> str:
    """The file at ``uri`` as UTF-8 text (``errors`` as for ``bytes.decode``)."""
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read().decode("utf-8", errors)


def remove_tree(uri: str) -> None:
    """Delete ``uri`` and everything under it, if it exists. (An object store may list as
    a directory a prefix whose objects are gone, SeaweedFS for one: nothing to delete.)"""
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        with contextlib.suppress(FileNotFoundError):
            fs.delete_dir(path)


def move(source: str, target: str) -> None:
    """Rename ``source`` to ``target`` (same filesystem)."""
    fs, src = filesystem(source)
    _, dst = filesystem(target)
    fs.move(src, dst)



def write_bytes(uri: str, data: bytes) -> None:
    """Write the file at ``uri`` whole: a reader sees all of it or none (on local disk a
    temporary file renamed over it; an object store's put is atomic)."""
    fs, path = filesystem(uri)
    parent = path.rsplit("/", 1)[0]
    local = isinstance(fs, pafs.LocalFileSystem)
    if local:
        fs.create_dir(parent, recursive=True)
    target = f"{parent}/.{path.rsplit('/', 1)[1]}.{os.getpid()}.tmp" if local else path
    with fs.open_output_stream(target) as stream:
        stream.write(data)
    if local:
        fs.move(target, path)
