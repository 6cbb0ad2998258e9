"""Blob stores (a local directory, S3 on a moto server) and Temporal external payload storage.

Every store test runs against both stores; the S3 one gets a fresh bucket, so the first write
also creates it. The end-to-end tests run real workflows on the session's Temporal server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from graphrunner.errors import GraphrunnerError

# The sandbox re-imports this module for BigPayloadWorkflow: S3 clients must come from outside.
with workflow.unsafe.imports_passed_through():
    from minio import Minio

    from graphrunner.stores import (
        BlobIntegrityError,
        BlobNotFound,
        BlobOutsideStore,
        BlobPayloadDriver,
        BlobStore,
        ExecutionRecord,
        ExecutionStatus,
        LocalBlobStore,
        RecordStore,
        S3BlobStore,
        open_blob_store,
        with_external_storage,
    )
    from tests.test_cli_lifetimes import cli_env, graphrunner

MiB = 1024 * 1024
ACCESS_KEY = "testing"
SECRET_KEY = "testing-secret"
ACTIVITY_TIMEOUT = timedelta(seconds=60)
NO_RETRY = RetryPolicy(maximum_attempts=1)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """Each store kind, empty: a fresh directory, or a bucket that does not exist yet."""
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"gr-{uuid.uuid4().hex[:12]}"
    return open_blob_store(
        f"s3://{bucket}/graphrunner/blobs?endpoint={endpoint}&secure=false",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )


def stored_keys(store: BlobStore, folder: str) -> list[str]:
    """Keys of the blobs under ``folder``, read straight from the directory or bucket."""
    if isinstance(store, LocalBlobStore):
        base = store.root / folder
        if not base.exists():
            return []
        return sorted(p.relative_to(store.root).as_posix() for p in base.rglob("*") if p.is_file())
    assert isinstance(store, S3BlobStore)
    minio = Minio(store.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
    start = f"{store.prefix}/"
    objects = minio.list_objects(store.bucket, prefix=f"{start}{folder}/", recursive=True)
    return sorted(str(o.object_name).removeprefix(start) for o in objects)


def pseudo_random_text(size: int, seed: int) -> str:
    """``size`` characters that no compression or deduplication could shortcut."""
    return random.Random(seed).randbytes(size // 2 + 1).hex()[:size]


# --- the stores -----------------------------------------------------------------------------


async def test_put_get_roundtrip(blob_store: BlobStore) -> None:
    data = os.urandom(300_000)
    ref = await blob_store.put("runs/r1/task a.bin", data)

    assert ref.size == len(data)
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert ref.uri == blob_store.uri("runs/r1/task a.bin")
    assert ref.uri.startswith("file:///" if isinstance(blob_store, LocalBlobStore) else "s3://")
    assert await blob_store.exists(ref.uri)
    assert await blob_store.get(ref.uri) == data


async def test_put_twice_is_harmless_and_a_new_content_replaces(blob_store: BlobStore) -> None:
    first = await blob_store.put("k/v", b"same")
    again = await blob_store.put("k/v", b"same")
    assert again == first
    assert await blob_store.get(first.uri) == b"same"
    assert stored_keys(blob_store, "k") == ["k/v"]

    replaced = await blob_store.put("k/v", b"other")
    assert replaced.uri == first.uri
    assert await blob_store.get(first.uri) == b"other"


async def test_local_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    for _ in range(3):
        await store.put("a/b", os.urandom(1000))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]


async def test_stream_yields_chunks_of_a_large_blob(blob_store: BlobStore) -> None:
    data = os.urandom(5 * MiB + 123)
    ref = await blob_store.put("big/blob", data)

    chunks = [chunk async for chunk in blob_store.stream(ref.uri)]
    assert b"".join(chunks) == data
    assert len(chunks) >= 6
    assert max(len(c) for c in chunks) <= MiB

    small = [c async for c in blob_store.stream(ref.uri, chunk_size=256 * 1024)]
    assert len(small) >= 21 and b"".join(small) == data


async def test_stream_stopped_early_releases_and_store_still_works(blob_store: BlobStore) -> None:
    ref = await blob_store.put("big/blob", os.urandom(3 * MiB))
    open_fds = len(os.listdir("/proc/self/fd"))
    for _ in range(15):
        async with contextlib.aclosing(blob_store.stream(ref.uri)) as chunks:
            async for _chunk in chunks:
                break
    assert len(await blob_store.get(ref.uri)) == 3 * MiB
    if isinstance(blob_store, LocalBlobStore):
        assert len(os.listdir("/proc/self/fd")) <= open_fds  # every file was closed


async def test_missing_blob_error_names_the_uri(blob_store: BlobStore) -> None:
    uri = blob_store.uri("no/such/blob")
    assert not await blob_store.exists(uri)
    with pytest.raises(BlobNotFound, match="no/such/blob") as raised:
        await blob_store.get(uri)
    assert raised.value.uri == uri and uri in str(raised.value)
    assert isinstance(raised.value, GraphrunnerError)
    with pytest.raises(BlobNotFound, match="no/such/blob"):
        async for _chunk in blob_store.stream(uri):
            pass


@pytest.mark.parametrize("key", ["", "/abs", "a/../../etc", "..", "a//b", "a/./b", "a\\b", "a\nb"])
async def test_unsafe_keys_are_refused(blob_store: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="bad blob key"):
        await blob_store.put(key, b"x")


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "s3://elsewhere/x", "http://h/x", "x"])
async def test_uris_of_other_stores_are_refused(blob_store: BlobStore, uri: str) -> None:
    with pytest.raises(BlobOutsideStore, match="is outside the blob store") as raised:
        await blob_store.get(uri)
    # One line a CLI can print (GraphrunnerError), still the ValueError the methods document.
    assert isinstance(raised.value, GraphrunnerError) and isinstance(raised.value, ValueError)
    assert repr(uri) in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(BlobOutsideStore):
        await blob_store.exists(uri)
    with pytest.raises(BlobOutsideStore):
        async for _chunk in blob_store.stream(uri):
            pass


async def test_uris_that_climb_out_of_the_store_are_refused(
    blob_store: BlobStore, tmp_path: Path
) -> None:
    (tmp_path / "secret").write_text("no")
    inside = blob_store.uri("a/b")
    for uri in [inside.replace("/a/b", "/../secret"), inside.replace("/a/b", "/a/../../secret")]:
        with pytest.raises(BlobOutsideStore, match="is outside the blob store"):
            await blob_store.get(uri)


# --- symbolic links in a local store --------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the blob root, with a file the store must never read or write."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret").write_bytes(b"outside the root")
    return folder


async def test_local_store_does_not_read_through_a_linked_file(
    tmp_path: Path, outside: Path
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    await store.put("results/kept", b"a real blob")
    (store.root / "results" / "leak").symlink_to(outside / "secret")
    uri = store.uri("results/leak")

    with pytest.raises(BlobOutsideStore, match="symbolic link 'results/leak'") as raised:
        await store.get(uri)
    assert raised.value.link == "results/leak" and str(store.root) in str(raised.value)
    with pytest.raises(BlobOutsideStore):
        async for _chunk in store.stream(uri):
            pass
    with pytest.raises(BlobOutsideStore):
        await store.exists(uri)
    assert await store.get(store.uri("results/kept")) == b"a real blob"


async def test_local_store_does_not_read_through_a_linked_directory(
    tmp_path: Path, outside: Path
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.root.mkdir()
    (store.root / "results").symlink_to(outside, target_is_directory=True)
    uri = store.uri("results/secret")

    with pytest.raises(BlobOutsideStore, match="symbolic link 'results'"):
        await store.get(uri)
    with pytest.raises(BlobOutsideStore):
        async for _chunk in store.stream(uri):
            pass
    with pytest.raises(BlobOutsideStore):
        await store.exists(uri)


async def test_local_store_does_not_write_through_a_linked_directory(
    tmp_path: Path, outside: Path
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    (store.root / "payloads").mkdir(parents=True)
    (store.root / "payloads" / "deep").symlink_to(outside, target_is_directory=True)

    with pytest.raises(BlobOutsideStore, match="symbolic link 'payloads/deep'"):
        await store.put("payloads/deep/secret", b"overwritten")
    with pytest.raises(BlobOutsideStore):
        await store.put("payloads/deep/new/blob", b"planted")

    assert sorted(p.name for p in outside.iterdir()) == ["secret"]  # no blob, no temp file
    assert (outside / "secret").read_bytes() == b"outside the root"


async def test_local_put_refuses_a_directory_swapped_for_a_link_while_it_writes(
    tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race a check-then-write would lose: right after put creates 'results', something
    # moves it away and puts a link to `outside` in its place.
    store = LocalBlobStore(tmp_path / "blobs")
    store.root.mkdir()
    folder = store.root / "results"
    real_mkdir = os.mkdir

    def mkdir_then_swap(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real_mkdir(path, mode, dir_fd=dir_fd)
        if folder.is_dir() and not folder.is_symlink():
            folder.rename(tmp_path / "moved")
            folder.symlink_to(outside, target_is_directory=True)

    monkeypatch.setattr(os, "mkdir", mkdir_then_swap)

    with pytest.raises(BlobOutsideStore, match="symbolic link 'results'"):
        await store.put("results/planted", b"planted")

    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


async def test_local_store_does_not_replace_a_linked_file(tmp_path: Path, outside: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    (store.root / "results").mkdir(parents=True)
    link = store.root / "results" / "r1"
    link.symlink_to(outside / "secret")

    with pytest.raises(BlobOutsideStore, match="symbolic link 'results/r1'"):
        await store.put("results/r1", b"new result")

    assert link.is_symlink() and (outside / "secret").read_bytes() == b"outside the root"
    assert sorted(p.name for p in (store.root / "results").iterdir()) == ["r1"]


async def test_local_store_refuses_links_that_stay_inside_the_root_too(tmp_path: Path) -> None:
    # Documented choice: no link is followed, wherever it points.
    store = LocalBlobStore(tmp_path / "blobs")
    await store.put("results/real", b"inside")
    (store.root / "alias").symlink_to(store.root / "results", target_is_directory=True)

    with pytest.raises(BlobOutsideStore, match="symbolic link 'alias'"):
        await store.get(store.uri("alias/real"))
    with pytest.raises(BlobOutsideStore, match="symbolic link 'alias'"):
        await store.put("alias/other", b"x")


async def test_local_store_root_may_itself_be_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "blobs").symlink_to(tmp_path / "real", target_is_directory=True)
    store = LocalBlobStore(tmp_path / "blobs")

    ref = await store.put("results/r1", b"data")

    assert await store.get(ref.uri) == b"data"
    assert (tmp_path / "real" / "results" / "r1").read_bytes() == b"data"


async def test_local_store_treats_a_fifo_as_no_blob_instead_of_hanging(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.root.mkdir()
    os.mkfifo(store.root / "pipe")

    with pytest.raises(BlobNotFound):
        await store.get(store.uri("pipe"))
    assert not await store.exists(store.uri("pipe"))


def test_cli_result_with_a_tampered_uri_is_one_line(tmp_path: Path, outside: Path) -> None:
    # A record whose result_uri was edited in the state DB to point out of the blob store.
    state = f"sqlite:///{tmp_path / 'state.db'}"
    blobs = tmp_path / "blobs"
    (blobs / "results").mkdir(parents=True)
    (blobs / "results" / "linked").symlink_to(outside / "secret")
    tampered = {
        "escaped": (outside / "secret").as_uri(),
        "climbed": blobs.as_uri() + "/../outside/secret",
        "linked": (blobs / "results" / "linked").as_uri(),
    }
    records = RecordStore(state)
    try:
        records.ensure_schema()
        for node, uri in tampered.items():
            asyncio.run(records.record(recorded_result(node, uri)))
    finally:
        records.close()
    environ = cli_env(GRAPHRUNNER_DATABASE_URL=state, GRAPHRUNNER_BLOB_URL=str(blobs))

    for node, uri in tampered.items():
        done = graphrunner("result", "lt-tampered", node, env=environ)

        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert f"blob URI '{uri}' is outside the blob store '{blobs}'" in done.stderr
        assert "outside the root" not in done.stdout


def recorded_result(node: str, uri: str) -> ExecutionRecord:
    now = datetime(2025, 3, 1, tzinfo=UTC)
    return ExecutionRecord(
        execution_id=f"e-{node}",
        lifetime_id="lt-tampered",
        run_id="run-1",
        graph_name="g",
        graph_version="1.0.0",
        graph_hash="ab" * 32,
        tenant="acme",
        node=node,
        kind="task",
        iteration=1,
        seq=0,
        attempt=1,
        status=ExecutionStatus.SUCCEEDED,
        created_at=now,
        started_at=now,
        finished_at=now,
        result_uri=uri,
        result_size=16,
    )


# --- open_blob_store ------------------------------------------------------------------------


def test_open_local_store_from_paths_and_file_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url, root in [
        (str(tmp_path / "x"), tmp_path / "x"),
        ("rel/dir", tmp_path / "rel" / "dir"),
        ((tmp_path / "with space").as_uri(), tmp_path / "with space"),
        (f"file://localhost{tmp_path}/y", tmp_path / "y"),
    ]:
        store = open_blob_store(url)
        assert isinstance(store, LocalBlobStore) and store.root == root, url


def test_open_s3_store_from_url(s3_endpoint: str) -> None:
    store = open_blob_store(
        "s3://my-bucket/a/b/?endpoint=minio.internal:9000&secure=false&region=eu-west-1",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
    )
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix, store.endpoint) == (
        "my-bucket",
        "a/b",
        "minio.internal:9000",
    )
    assert store.uri("k 1") == "s3://my-bucket/a/b/k%201"

    from_env = open_blob_store(
        "s3://my-bucket",
        environ={"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"},
    )
    assert isinstance(from_env, S3BlobStore) and from_env.endpoint == "s3.amazonaws.com"
    assert from_env.uri("k") == "s3://my-bucket/k"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("http://host/x", "unsupported"),
        ("file://host/x", "file:///absolute"),
        ("file:relative", "file:///absolute"),
        ("file:///x?y=1", "file:///absolute"),
        ("s3://", "not a valid S3 bucket"),
        ("s3://Bad_Bucket/x", "not a valid S3 bucket"),
        ("s3://bucket?color=red", "unknown parameter"),
        ("s3://bucket?secure=maybe", "secure must be"),
        ("s3://bucket?endpoint=a/b", "endpoint must be"),
        ("s3://bucket?endpoint", "malformed query"),
        ("s3://bucket/a/../b", "bad S3 prefix"),
        ("s3://bucket/x#frag", "fragment"),
    ],
)
def test_open_blob_store_rejects_bad_urls(url: str, message: str) -> None:
    env = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"}
    with pytest.raises(ValueError, match=message) as raised:
        open_blob_store(url, environ=env)
    if url:
        assert repr(url) in str(raised.value)


def test_open_s3_store_needs_credentials_and_never_echoes_them() -> None:
    with pytest.raises(ValueError, match="AWS_ACCESS_KEY_ID") as raised:
        open_blob_store("s3://bucket/p", environ={})
    assert "s3://bucket/p" in str(raised.value)

    with pytest.raises(ValueError, match="not in the URL") as raised:
        open_blob_store("s3://id:hunter2@bucket/p", environ={})
    assert "hunter2" not in str(raised.value)


# --- the payload driver ---------------------------------------------------------------------


def payload(data: bytes) -> Payload:
    return Payload(metadata={"encoding": b"binary/plain", "extra": b"1"}, data=data)


async def test_driver_stores_equal_payloads_once_and_verifies_them(blob_store: BlobStore) -> None:
    driver = BlobPayloadDriver(blobs=blob_store)
    big, other = payload(os.urandom(400_000)), payload(b"small but stored when asked")

    claims = await driver.store(StorageDriverStoreContext(), [big, other, big])
    assert claims[0] == claims[2] != claims[1]
    assert len(stored_keys(blob_store, "payloads")) == 2
    again = await driver.store(StorageDriverStoreContext(), [payload(big.data)])
    assert again == claims[:1]

    retrieved = await driver.retrieve(StorageDriverRetrieveContext(), claims)
    assert retrieved == [big, other, big]


async def test_driver_refuses_a_corrupt_or_missing_payload(blob_store: BlobStore) -> None:
    driver = BlobPayloadDriver(blobs=blob_store)
    [claim] = await driver.store(StorageDriverStoreContext(), [payload(b"original")])
    uri = claim.claim_data["uri"]
    key = stored_keys(blob_store, "payloads")[0]

    await blob_store.put(key, payload(b"tampered").SerializeToString())
    with pytest.raises(BlobIntegrityError, match="corrupt") as raised:
        await driver.retrieve(StorageDriverRetrieveContext(), [claim])
    assert uri in str(raised.value)

    missing = StorageDriverClaim(claim_data={**claim.claim_data, "uri": blob_store.uri("gone")})
    with pytest.raises(BlobNotFound, match="gone"):
        await driver.retrieve(StorageDriverRetrieveContext(), [missing])
    with pytest.raises(BlobIntegrityError, match="lacks"):
        await driver.retrieve(StorageDriverRetrieveContext(), [StorageDriverClaim({"k": "v"})])


def test_with_external_storage_keeps_the_converter_and_sets_the_threshold(
    tmp_path: Path,
) -> None:
    converter = with_external_storage(
        pydantic_data_converter, LocalBlobStore(tmp_path), threshold=7
    )
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class
    assert converter.external_storage is not None
    assert converter.external_storage.payload_size_threshold == 7
    assert pydantic_data_converter.external_storage is None
    with pytest.raises(ValueError, match="already has external storage"):
        with_external_storage(converter, LocalBlobStore(tmp_path))


# --- end to end on Temporal -----------------------------------------------------------------


@dataclass(frozen=True)
class MakeTextInput:
    size: int
    seed: int


@dataclass(frozen=True)
class Text:
    text: str


@activity.defn
async def make_text(inp: MakeTextInput) -> Text:
    return Text(text=pseudo_random_text(inp.size, inp.seed))


@activity.defn
async def echo_text(inp: Text) -> Text:
    return Text(text=inp.text)


@workflow.defn
class BigPayloadWorkflow:
    """Makes a large text, hands it to a second activity, and returns what that one returns."""

    @workflow.run
    async def run(self, inp: MakeTextInput) -> Text:
        made = await workflow.execute_activity(
            make_text, inp, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=NO_RETRY
        )
        return await workflow.execute_activity(
            echo_text, made, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=NO_RETRY
        )


async def run_big_payload(env: WorkflowEnvironment, store: BlobStore, size: int) -> None:
    """Run the workflow with a ``size``-character text through ``store`` and check it all."""
    converter = with_external_storage(pydantic_data_converter, store)
    client = Client(
        env.client.service_client, namespace=env.client.namespace, data_converter=converter
    )
    task_queue = f"tq-{uuid.uuid4().hex[:10]}"
    inp = MakeTextInput(size=size, seed=size)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BigPayloadWorkflow],
        activities=[make_text, echo_text],
    ):
        handle = await client.start_workflow(
            BigPayloadWorkflow.run,
            inp,
            id=f"big-{uuid.uuid4().hex[:10]}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=100),
        )
        result = await handle.result()

    assert result == Text(text=pseudo_random_text(size, size))
    history = await handle.fetch_history()
    history_bytes = len(history.to_json().encode())
    assert history_bytes < 100_000, f"history holds {history_bytes} bytes"
    # The text went activity -> workflow -> activity -> workflow -> client as one payload.
    assert len(stored_keys(store, "payloads")) == 1
    await Replayer(workflows=[BigPayloadWorkflow], data_converter=converter).replay_workflow(
        history
    )


async def test_large_results_leave_history_and_are_stored_once(
    env: WorkflowEnvironment, blob_store: BlobStore
) -> None:
    await run_big_payload(env, blob_store, 5 * 1000 * 1000)


async def test_a_task_returning_50_mb_completes(env: WorkflowEnvironment, tmp_path: Path) -> None:
    await run_big_payload(env, LocalBlobStore(tmp_path), 50 * 1000 * 1000)
