"""Blob stores: large bytes kept outside Temporal history, named by ``file://`` or ``s3://`` URIs.

`LocalBlobStore` keeps blobs in a directory; `S3BlobStore` in a bucket of any S3-compatible
server, through the ``minio`` client. `open_blob_store` builds either from a URL. A URI that
leads outside a store (another store's, a path that climbs out of the root, or one through a
symbolic link) is refused with `BlobOutsideStore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import io
import os
import re
import secrets
import stat
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
    "BlobOutsideStore",
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
# How LocalBlobStore opens what lies below its root: never through a symbolic link.
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | _CLOEXEC


class BlobNotFound(GraphrunnerError):
    """No blob exists at a URI; ``uri`` names it."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        super().__init__(f"blob not found: {uri} (deleted, or written to another store?)")


class BlobIntegrityError(GraphrunnerError):
    """A blob's content does not match the SHA-256 recorded when it was written."""


class BlobOutsideStore(GraphrunnerError, ValueError):
    """A blob URI or key leads outside the store, so the store refuses to touch it.

    Another store's URI, a path that climbs out of the root, or (local stores) a path through
    a symbolic link. A `ValueError` too, as the store methods document.

    Attributes:
        name: The URI (or key) refused.
        store: Where the store keeps its blobs: a directory or ``s3://bucket/prefix/``.
        link: The symbolic link met, relative to the root, if that was the reason.
    """

    def __init__(self, name: str, store: str, *, link: str | None = None) -> None:
        self.name = name
        self.store = store
        self.link = link
        what = "URI" if "://" in name else "key"
        if link is None:
            reason = " (written to another store, or edited?)"
        else:
            reason = f": it leads through the symbolic link {link!r}, and the store follows none"
        super().__init__(f"blob {what} {name!r} is outside the blob store {store!r}{reason}")


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
            BlobOutsideStore: ``key`` leads outside this store (a local store's path meets a
                symbolic link).
        """

    @abstractmethod
    async def get(self, uri: str) -> bytes:
        """The whole content of the blob at ``uri``; use `stream` for large blobs.

        Raises:
            BlobNotFound: Nothing is stored at ``uri``.
            BlobOutsideStore: ``uri`` leads outside this store (a `ValueError`).
        """

    @abstractmethod
    def stream(self, uri: str, chunk_size: int = CHUNK_SIZE) -> AsyncGenerator[bytes, None]:
        """Yield the content of the blob at ``uri`` in chunks of at most ``chunk_size`` bytes.

        Only one chunk is held in memory at a time. Close the iterator (``async with
        contextlib.aclosing(...)``) when stopping early, to release the file or connection.
        Errors surface on the first iteration, as the method is an async generator.

        Raises:
            BlobNotFound: Nothing is stored at ``uri``.
            BlobOutsideStore: ``uri`` leads outside this store (a `ValueError`).
            ValueError: ``chunk_size`` < 1.
        """

    @abstractmethod
    async def exists(self, uri: str) -> bool:
        """Whether a blob is stored at ``uri``.

        Raises:
            BlobOutsideStore: ``uri`` leads outside this store (a `ValueError`).
        """


class LocalBlobStore(BlobStore):
    """Blobs as files under a root directory, written atomically (temp file, fsync, rename).

    Symbolic links below the root are never followed, wherever they point (even back inside
    the root): a key or URI whose path meets one, as a directory or as the blob file itself, is
    refused with `BlobOutsideStore`. The store never makes links, so one there was put there
    by something else; following it would let ``get`` read and ``put`` write outside the root.
    Paths are walked one directory at a time with ``O_NOFOLLOW`` from an open descriptor of
    the root, so a link swapped in during a call is refused too, never followed. The root
    itself may be, or lie below, a link: it is resolved once, here.

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
        return self.root.joinpath(*_check_key(key).split("/")).as_uri()

    async def put(self, key: str, data: bytes) -> BlobRef:
        """Write atomically: a temp file beside the target, fsync, then rename over it.

        Raises:
            ValueError: ``key`` is not a safe relative name.
            BlobOutsideStore: The key's path meets a symbolic link.
        """
        uri = self.uri(key)
        digest = await asyncio.to_thread(self._write, key, data)
        return BlobRef(uri=uri, size=len(data), sha256=digest)

    async def get(self, uri: str) -> bytes:
        """Read the whole file in a worker thread."""
        key = self._key_of(uri)

        def read() -> bytes:
            with self._open(key, uri) as file:
                return file.read()

        return await asyncio.to_thread(read)

    async def stream(self, uri: str, chunk_size: int = CHUNK_SIZE) -> AsyncGenerator[bytes, None]:
        """Read the file chunk by chunk, each read in a worker thread."""
        _check_chunk_size(chunk_size)
        key = self._key_of(uri)
        file = await asyncio.to_thread(self._open, key, uri)
        try:
            while chunk := await asyncio.to_thread(file.read, chunk_size):
                yield chunk
        finally:
            file.close()

    async def exists(self, uri: str) -> bool:
        """Whether a regular file is at ``uri`` (one reached through a link raises)."""
        key = self._key_of(uri)
        return await asyncio.to_thread(self._is_file, key, uri)

    def _key_of(self, uri: str) -> str:
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise BlobOutsideStore(uri, str(self.root))
        path = Path(unquote(parts.path))
        if not path.is_relative_to(self.root) or path == self.root:
            raise BlobOutsideStore(uri, str(self.root))
        try:
            return _check_key(path.relative_to(self.root).as_posix())
        except ValueError:  # '..' and friends: lexically below the root, really not
            raise BlobOutsideStore(uri, str(self.root)) from None

    # The walk: every name is looked up in a directory already open, without following links.

    def _open_dir(self, parts: list[str], name: str, *, create: bool) -> int:
        """Descriptor of the directory root/parts; FileNotFoundError if it is missing."""
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root, _DIR_FLAGS & ~os.O_NOFOLLOW)
        try:
            for depth, part in enumerate(parts):
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, dir_fd=fd)
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    self._refuse_link(exc, fd, parts[: depth + 1], name)
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _refuse_link(self, exc: OSError, dir_fd: int, parts: list[str], name: str) -> None:
        # O_NOFOLLOW on a link fails with ELOOP (ENOTDIR with O_DIRECTORY, EMLINK on BSD).
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            return
        with contextlib.suppress(OSError):
            if stat.S_ISLNK(os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise BlobOutsideStore(name, str(self.root), link="/".join(parts)) from None

    def _open(self, key: str, uri: str) -> BinaryIO:
        *folders, leaf = key.split("/")
        try:
            dir_fd = self._open_dir(folders, uri, create=False)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(uri) from None
        try:
            # O_NONBLOCK: opening a FIFO someone left here must not hang; files ignore it.
            fd = os.open(leaf, os.O_RDONLY | os.O_NONBLOCK | _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            self._refuse_link(exc, dir_fd, key.split("/"), uri)
            if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
                raise BlobNotFound(uri) from None
            raise
        finally:
            os.close(dir_fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise BlobNotFound(uri)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def _is_file(self, key: str, uri: str) -> bool:
        *folders, leaf = key.split("/")
        try:
            dir_fd = self._open_dir(folders, uri, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            mode = os.stat(leaf, dir_fd=dir_fd, follow_symlinks=False).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return False
        finally:
            os.close(dir_fd)
        if stat.S_ISLNK(mode):
            raise BlobOutsideStore(uri, str(self.root), link=key)
        return stat.S_ISREG(mode)

    def _write(self, key: str, data: bytes) -> str:
        """Write ``data`` at ``key`` so readers see the old file or the whole new one."""
        digest = hashlib.sha256(data).hexdigest()
        *folders, leaf = key.split("/")
        dir_fd = self._open_dir(folders, key, create=True)
        try:
            # A link at the leaf would only be replaced by the rename, never followed; it is
            # refused anyway, like everywhere else.
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISLNK(os.stat(leaf, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    raise BlobOutsideStore(key, str(self.root), link=key)
            tmp = f".{leaf}.{secrets.token_hex(6)}.tmp"
            # Mode 0o666 minus the umask, like any other file (mkstemp would make it 0o600).
            fd = os.open(
                tmp, _FILE_FLAGS | os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=dir_fd
            )
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(tmp, leaf, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise
            # The rename is only durable once the directory entry is.
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
            raise BlobOutsideStore(uri, start)
        try:
            return self._object(unquote(uri[len(start) :]))
        except ValueError:  # '..' and friends
            raise BlobOutsideStore(uri, start) from None

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
