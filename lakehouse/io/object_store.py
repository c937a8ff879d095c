"""An S3-compatible object store reached with the S3 API (pyarrow's S3 client): the
store a warehouse at ``s3a://bucket/prefix`` lives on."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pyarrow import fs


@dataclass(frozen=True)
class S3Store:
    """Where an S3-compatible store answers and the key it is reached with."""

    endpoint: str
    """``http(s)://host:port``."""
    region: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)

    def filesystem(self, timeout: float = 10.0) -> fs.S3FileSystem:
        """A client of the store (path-style requests; one attempt per call when
        ``timeout`` is short, so a probe answers in about that long)."""
        url = urlsplit(self.endpoint)
        return fs.S3FileSystem(
            access_key=self.access_key, secret_key=self.secret_key, region=self.region,
            endpoint_override=url.netloc, scheme=url.scheme or "http",
            force_virtual_addressing=False, connect_timeout=timeout, request_timeout=timeout,
            retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=1 if timeout < 5 else 3))

    def has_bucket(self, bucket: str, timeout: float = 2.0) -> bool:
        """Whether the store answers and holds ``bucket`` (False if it does not answer)."""
        try:
            info = self.filesystem(timeout).get_file_info(bucket)
        except OSError:
            return False
        return info.type == fs.FileType.Directory
