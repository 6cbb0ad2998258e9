"""Blob stores: large bytes kept outside Temporal history, named by ``file://`` or ``s3://`` URIs.

`LocalBlobStore` keeps blobs in a directory; `S3BlobStore` in a bucket of any S3-compatible
server, through the ``minio`` client. `open_blob_store` builds either from a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import re
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from graphrunner.errors import GraphrunnerError

if TYPE_CHECKING:
    from minio import Minio
    from urllib3 import BaseHTTPResponse

__all__ = [
    "BlobIntegrityError",
    "BlobNotFound",
    "BlobRef",
    "BlobStore",
    "LocalBlobStore",
    "S3BlobStore",
    "open_blob_store",
]

CHUNK_SIZE = 1024 * 1024
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class BlobNotFound(GraphrunnerError):
    """No blob exists at a URI; ``uri`` names it."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        super().__init__(f"blob not found: {uri} (deleted, or written to another store?)")


class BlobIntegrityError(GraphrunnerError):
    """A blob's content does not match the SHA-256 recorded when it was written."""


@dataclass(frozen=True, kw_only=True)
class BlobRef:
    """Where a blob lives and what it holds.

    Attributes:
        uri: ``file:///abs/path`` or ``s3://bucket/key``.
        size: Length in bytes.
        sha256: Hex SHA-256 of the content.
    """

    uri: str
    size: int
    sha256: str


def _check_key(key: str, *, what: str = "blob key") -> str:
    """Return ``key`` if it is a safe relative ``a/b/c`` name, else raise `ValueError`."""
    bad = (
        not key
        or key.startswith("/")
        or "\\" in key
        or any(ord(c) < 32 or ord(c) == 127 for c in key)
        or any(part in ("", ".", "..") for part in key.split("/"))
    )
    if bad:
        raise ValueError(
            f"bad {what} {key!r}: use a relative name like 'a/b/c' "
            "without empty, '.' or '..' parts, backslashes or control characters"
        )
    return key


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1 byte, got {chunk_size}")


class BlobStore(ABC):
    """Bytes stored under keys and fetched back by URI. Every method is safe to await."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """The URI that `put` of ``key`` returns, without any I/O.

        Raises:
            ValueError: ``key`` is not a safe relative name.
        """

    @abstractmethod
    async def put(self, key: str, data: bytes) -> BlobRef:
        """Store ``data`` under ``key``, replacing what was there; a repeat is harmless.

        Raises:
            ValueError: ``key`` is not a safe relative name.
        """

    @abstractmethod
    async def get(self, uri: str) -> bytes:
        """The whole content of the blob at ``uri``; use `stream` for large blobs.

        Raises:
            BlobNotFound: Nothing is stored at ``uri``.
            ValueError: ``uri`` does not belong to this store.
        """

    @abstractmethod
    def stream(self, uri: str, chunk_size: int = CHUNK_SIZE) -> AsyncGenerator[bytes, None]:
        """Yield the content of the blob at ``uri`` in chunks of at most ``chunk_size`` bytes.

        Only one chunk is held in memory at a time. Close the iterator (``async with
        contextlib.aclosing(...)``) when stopping early, to release the file or connection.
        Errors surface on the first iteration, as the method is an async generator.

        Raises:
            BlobNotFound: Nothing is stored at ``uri``.
            ValueError: ``uri`` does not belong to this store, or ``chunk_size`` < 1.
        """

    @abstractmethod
    async def exists(self, uri: str) -> bool:
        """Whether a blob is stored at ``uri``.

        Raises:
            ValueError: ``uri`` does not belong to this store.
        """


class LocalBlobStore(BlobStore):
    """Blobs as files under a root directory, written atomically (temp file, fsync, rename).

    Args:
        root: The directory; created when the first blob is written. A relative path is
            resolved against the current directory once, here.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def uri(self, key: str) -> str:
        """``file://`` URI of the file for ``key`` under the root."""
        return self._path(key).as_uri()

    async def put(self, key: str, data: bytes) -> BlobRef:
        """Write atomically: a temp file beside the target, fsync, then rename over it."""
        path = self._path(key)
        digest = await asyncio.to_thread(_write_atomic, path, data)
        return BlobRef(uri=path.as_uri(), size=len(data), sha256=digest)

    async def get(self, uri: str) -> bytes:
        """Read the whole file in a worker thread."""
        path = self._path_of(uri)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(uri) from None

    async def stream(self, uri: str, chunk_size: int = CHUNK_SIZE) -> AsyncGenerator[bytes, None]:
        """Read the file chunk by chunk, each read in a worker thread."""
        _check_chunk_size(chunk_size)
        path = self._path_of(uri)
        try:
            file = await asyncio.to_thread(_open_file, path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(uri) from None
        try:
            while chunk := await asyncio.to_thread(file.read, chunk_size):
                yield chunk
        finally:
            file.close()

    async def exists(self, uri: str) -> bool:
        """Whether a regular file is at ``uri``."""
        return await asyncio.to_thread(self._path_of(uri).is_file)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_check_key(key).split("/"))

    def _path_of(self, uri: str) -> Path:
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ValueError(f"{uri!r} is not a file:// URI of {self!r}")
        path = Path(unquote(parts.path))
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"{uri!r} is outside {self!r}")
        return self._path(path.relative_to(self.root).as_posix())


def _open_file(path: Path) -> BinaryIO:
    return path.open("rb")


def _write_atomic(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one."""
    digest = hashlib.sha256(data).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # os.open rather than mkstemp: mode 0o666 minus the umask, like any other file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename is only durable once the directory entry is.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return digest


class S3BlobStore(BlobStore):
    """Blobs as objects in a bucket of an S3-compatible server, through ``minio``.

    The bucket is created on the first write when missing. Calls run in worker threads.

    Args:
        endpoint: ``host:port`` of the server.
        access_key: Access key id.
        secret_key: Secret access key.
        bucket: Bucket name.
        secure: Use HTTPS.
        prefix: Key prefix inside the bucket, e.g. ``graphrunner/blobs``.
        region: Bucket region; asked of the server when not given.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = True,
        prefix: str = "",
        region: str | None = None,
    ) -> None:
        # Imported here so modules that only need BlobRef stay light in the workflow sandbox.
        import urllib3
        from minio import Minio

        if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"bad S3 bucket name {bucket!r}: 3-63 of a-z, 0-9, '.', '-'")
        self.bucket = bucket
        self.prefix = _check_key(prefix.strip("/"), what="S3 prefix") if prefix.strip("/") else ""
        self.endpoint = endpoint
        # minio's default pool waits 5 minutes to connect and retries 5 times: a dead endpoint
        # would stall an activity for half an hour before Temporal's own retries got a say.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10, read=60),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[502, 503, 504]),
        )
        self._client: Minio = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3BlobStore({self.endpoint!r}, {self.uri_prefix()!r})"

    def uri_prefix(self) -> str:
        """``s3://bucket/prefix/``: the start of every URI of this store."""
        return f"s3://{self.bucket}/" + (f"{quote(self.prefix)}/" if self.prefix else "")

    def uri(self, key: str) -> str:
        """``s3://bucket/prefix/key``, the key percent-encoded."""
        return self.uri_prefix() + quote(_check_key(key))

    async def put(self, key: str, data: bytes) -> BlobRef:
        """Upload in one request (multipart past 5 MiB), creating the bucket if missing."""
        uri = self.uri(key)
        digest = await asyncio.to_thread(self._put_sync, self._object(key), data)
        return BlobRef(uri=uri, size=len(data), sha256=digest)

    async def get(self, uri: str) -> bytes:
        """Download the whole object in a worker thread."""
        name = self._object_of(uri)
        return await asyncio.to_thread(self._get_sync, uri, name)

    async def stream(self, uri: str, chunk_size: int = CHUNK_SIZE) -> AsyncGenerator[bytes, None]:
        """Read the response body chunk by chunk, then release the connection to the pool."""
        _check_chunk_size(chunk_size)
        name = self._object_of(uri)
        response = await asyncio.to_thread(self._open_sync, uri, name)
        try:
            while chunk := await asyncio.to_thread(response.read, chunk_size):
                yield chunk
        finally:
            response.close()
            response.release_conn()

    async def exists(self, uri: str) -> bool:
        """Whether the object exists (a HEAD request); false if the bucket is missing too."""
        name = self._object_of(uri)
        return await asyncio.to_thread(self._exists_sync, name)

    def _object(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _object_of(self, uri: str) -> str:
        start = self.uri_prefix()
        if not uri.startswith(start) or uri == start:
            raise ValueError(f"{uri!r} is not a blob URI of {self!r}")
        return self._object(unquote(uri[len(start) :]))

    def _ensure_bucket(self) -> None:
        from minio.error import S3Error

        with self._bucket_lock:
            if self._bucket_ready:
                return
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:
                    # Another writer created it between our check and our request.
                    if exc.code != "BucketAlreadyOwnedByYou":
                        raise
            self._bucket_ready = True

    def _put_sync(self, name: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._ensure_bucket()
        self._client.put_object(
            self.bucket, name, io.BytesIO(data), len(data), metadata={"sha256": digest}
        )
        return digest

    def _open_sync(self, uri: str, name: str) -> BaseHTTPResponse:
        from minio.error import S3Error

        try:
            return self._client.get_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise BlobNotFound(uri) from None
            raise

    def _get_sync(self, uri: str, name: str) -> bytes:
        response = self._open_sync(uri, name)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def _exists_sync(self, name: str) -> bool:
        from minio.error import S3Error

        try:
            self._client.stat_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "ResourceNotFound"):
                return False
            raise
        return True


def open_blob_store(
    url: str,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> BlobStore:
    """Open the blob store a URL names.

    ``/some/dir``, ``some/dir`` or ``file:///some/dir`` open a `LocalBlobStore`;
    ``s3://bucket/prefix?endpoint=host:port&secure=false&region=r`` opens an `S3BlobStore`
    (``endpoint`` defaults to ``s3.amazonaws.com``, ``secure`` to true).

    Args:
        url: The store's URL or directory.
        access_key: S3 access key id; defaults to ``AWS_ACCESS_KEY_ID``.
        secret_key: S3 secret key; defaults to ``AWS_SECRET_ACCESS_KEY``.
        environ: Where to read those variables (default: ``os.environ``).

    Raises:
        ValueError: The URL is malformed or S3 credentials are missing; the message names it.
    """
    if not url or not url.strip():
        raise ValueError("empty blob store URL: give a directory, file:///dir or s3://bucket")
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise ValueError(f"bad blob store URL {url!r}: expected file:///absolute/dir")
        if not parts.path.startswith("/"):
            raise ValueError(f"bad blob store URL {url!r}: expected file:///absolute/dir")
        return LocalBlobStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        return _open_s3(url, access_key, secret_key, os.environ if environ is None else environ)
    # One-letter schemes are Windows drive letters, not URL schemes.
    if "://" in url or len(parts.scheme) > 1:
        raise ValueError(f"unsupported blob store URL {url!r}: use a directory, file:// or s3://")
    return LocalBlobStore(Path(url))


def _open_s3(
    url: str,
    access_key: str | None,
    secret_key: str | None,
    environ: Mapping[str, str],
) -> S3BlobStore:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # Never echo a URL that may carry credentials.
        raise ValueError(
            f"bad blob store URL s3://***@{parts.netloc.rpartition('@')[2]}/...: put credentials "
            "in access_key/secret_key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, not in the URL"
        )
    bucket = parts.netloc
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"bad blob store URL {url!r}: {bucket!r} is not a valid S3 bucket name")
    if parts.fragment:
        raise ValueError(f"bad blob store URL {url!r}: no #fragment allowed")
    query: dict[str, str] = {}
    if parts.query:
        try:
            query = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True))
        except ValueError:
            raise ValueError(f"bad blob store URL {url!r}: malformed query string") from None
    unknown = set(query) - {"endpoint", "secure", "region"}
    if unknown:
        raise ValueError(
            f"bad blob store URL {url!r}: unknown parameter(s) {', '.join(sorted(unknown))}; "
            "known: endpoint, secure, region"
        )
    endpoint = query.get("endpoint", "s3.amazonaws.com")
    if not re.fullmatch(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:]+\](:\d{1,5})?", endpoint):
        raise ValueError(f"bad blob store URL {url!r}: endpoint must be host or host:port")
    secure_text = query.get("secure", "true").lower()
    if secure_text not in _TRUE | _FALSE:
        raise ValueError(f"bad blob store URL {url!r}: secure must be true or false")
    prefix = unquote(parts.path).strip("/")
    if prefix:
        try:
            _check_key(prefix, what="S3 prefix")
        except ValueError as exc:
            raise ValueError(f"bad blob store URL {url!r}: {exc}") from None
    access = access_key or environ.get("AWS_ACCESS_KEY_ID")
    secret = secret_key or environ.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        raise ValueError(
            f"no S3 credentials for blob store {url!r}: pass access_key and secret_key "
            "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    return S3BlobStore(
        endpoint=endpoint,
        access_key=access,
        secret_key=secret,
        bucket=bucket,
        secure=secure_text in _TRUE,
        prefix=prefix,
        region=query.get("region") or None,
    )
