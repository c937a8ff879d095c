"""An S3-compatible object store reached with the S3 API (pyarrow's S3 client): the
store a warehouse at ``s3a://bucket/prefix`` lives on."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pyarrow import fs

from lakehouse.errors import ErrorCode, LakehouseError

S3_SCHEMES = ("s3", "s3a")


def bucket_of(uri: str) -> str | None:
    """The bucket of an ``s3://`` or ``s3a://`` URI, None for any other."""
    url = urlsplit(uri)
    return url.netloc if url.scheme in S3_SCHEMES else None


@dataclass(frozen=True)
class S3Store:
    """Where an S3-compatible store answers and the key it is reached with (none: the
    clients' own credential chain, e.g. an instance role)."""

    endpoint: str
    """``http(s)://host:port``."""
    region: str
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    path_style: bool = True
    """Bucket in the path (``host/bucket/key``), as on-premises stores want; False: in the
    host name, as AWS prefers."""

    def delta_rs_options(self) -> dict[str, str]:
        """delta-rs's (object_store's) storage options for the store. Its commits use a
        conditional put (``If-None-Match: *``) by default: the store must honour it, as S3
        and SeaweedFS do; no lock and no unsafe-rename switch is ever set."""
        options = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": self.region,
                   "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": str(not self.path_style).lower(),
                   "AWS_ALLOW_HTTP": str(self.endpoint.startswith("http://")).lower()}
        if self.access_key and self.secret_key:
            options |= {"AWS_ACCESS_KEY_ID": self.access_key,
                        "AWS_SECRET_ACCESS_KEY": self.secret_key}
        return options

    def hadoop_conf(self, bucket: str) -> dict[str, str]:
        """Hadoop's S3A settings for ``bucket`` (per-bucket keys: other buckets keep their
        own), for Spark's ``spark.hadoop.*``."""
        at = f"fs.s3a.bucket.{bucket}."
        conf = {at + "endpoint": self.endpoint, at + "endpoint.region": self.region,
                at + "path.style.access": str(self.path_style).lower(),
                at + "connection.ssl.enabled": str(self.endpoint.startswith("https://")).lower()}
        if self.access_key and self.secret_key:
            conf |= {at + "access.key": self.access_key, at + "secret.key": self.secret_key}
        return conf

    def filesystem(self, timeout: float = 10.0) -> fs.S3FileSystem:
        """A client of the store (path-style requests; one attempt per call when
        ``timeout`` is short, so a probe answers in about that long)."""
        url = urlsplit(self.endpoint)
        return fs.S3FileSystem(
            access_key=self.access_key, secret_key=self.secret_key, region=self.region,
            endpoint_override=url.netloc, scheme=url.scheme or "http",
            force_virtual_addressing=not self.path_style, connect_timeout=timeout, request_timeout=timeout,
            retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=1 if timeout < 5 else 3))

    def has_bucket(self, bucket: str, timeout: float = 2.0) -> bool:
        """Whether the store answers and holds ``bucket`` (False if it does not answer)."""
        try:
            info = self.filesystem(timeout).get_file_info(bucket)
        except OSError:
            return False
        return info.type == fs.FileType.Directory


def check_bucket(store: S3Store, bucket: str, timeout: float = 5.0) -> None:
    """Fail with a coded error unless ``store`` answers and lets its key read ``bucket``."""
    where = f"{store.endpoint} (bucket {bucket})"
    try:
        info = store.filesystem(timeout).get_file_info(bucket)
    except OSError as exc:
        if "ACCESS_DENIED" in str(exc) or "FORBIDDEN" in str(exc).upper():
            raise LakehouseError(
                ErrorCode.STORAGE_DENIED, f"the object store at {where} refuses the key",
                hint="check storage.credentials (access_key, secret_key) and the key's rights "
                     "on the bucket", endpoint=store.endpoint, bucket=bucket) from None
        raise LakehouseError(
            ErrorCode.STORAGE_UNREACHABLE, f"the object store at {where} does not answer: "
            f"{str(exc).rsplit(': ', 1)[-1]}",
            hint="start it (`lakehouse storage up` for the embedded one) or fix "
                 "storage.endpoint; a restart resumes where the run stopped",
            endpoint=store.endpoint, bucket=bucket) from None
    if info.type != fs.FileType.Directory:
        raise LakehouseError(
            ErrorCode.STORAGE_NO_BUCKET, f"the object store at {store.endpoint} has no bucket "
            f"{bucket}", hint="create the bucket (the embedded store creates its warehouse's "
                              "at `lakehouse storage up`) or fix warehouse.root",
            endpoint=store.endpoint, bucket=bucket)


def unanswered(store: S3Store, buckets: list[str]) -> LakehouseError | None:
    """LH-STORAGE-003 if ``store`` holds one of ``buckets`` and does not answer now (a run
    that failed then stops with it: a restart resumes); None if it answers."""
    for bucket in buckets:
        try:
            check_bucket(store, bucket, timeout=2.0)
        except LakehouseError as exc:
            if exc.code is ErrorCode.STORAGE_UNREACHABLE:
                return exc
    return None
