"""Encryption at rest: the AES-GCM codec, key rotation, the codec server, encrypted records.

Real parts throughout: the session's Temporal dev server, workers and clients built from
settings the way ``graphrunner worker`` builds them, a local blob store, the real
``graphrunner codec-server`` process and the real ``temporal`` CLI.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from graphrunner import GraphrunnerClient, GraphrunnerError, Settings, build_worker
from graphrunner.client import temporal_binary
from graphrunner.codec import (
    DecryptionError,
    EncryptionCodec,
    RecordCipher,
    open_blob,
    open_fields,
    parse_keys,
)
from graphrunner.graph import parse_graph
from graphrunner.graph._model import AgentGraph
from tests.codec_nodes import MARKER
from tests.conftest import ROOT

pytestmark = pytest.mark.timeout(120)

GRAPH_YAML = """
name: secret
version: 1.0.0
nodes:
  - {name: bulk, kind: task, impl: "tests.codec_nodes:bulk"}
  - {name: ask, kind: plan, impl: "tests.codec_nodes:ask", local: true}
  - name: review
    kind: task
    human:
      prompt: "Is {secret} fine?"
      response: {type: object, properties: {ok: {type: boolean}, note: {type: string}}}
  - {name: done, kind: plan, impl: "tests.codec_nodes:done", local: true}
edges:
  - {from: bulk, to: ask}
  - {from: ask, to: review}
  - {from: review, to: done}
  - {from: done, type: FINAL}
"""

UI = "http://localhost:8233"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


K1, K2 = new_key(), new_key()


def graph() -> AgentGraph:
    return parse_graph(GRAPH_YAML, file=str(ROOT / "tests" / "secret.yaml"))


def settings_for(tmp_path: Path, task_queue: str, keys: str | None, **more: Any) -> Settings:
    return Settings(
        task_queue=task_queue,
        home=tmp_path / "state",
        blob_url=str(tmp_path / "blobs"),
        codec_keys=keys,
        **more,
    )


@pytest.fixture(autouse=True)
def no_temporal_profiles(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Clients connect only where the test says (no user temporal.toml, no TEMPORAL_*)."""
    for name in list(os.environ):
        if name.startswith("TEMPORAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "no-temporal.toml"))


async def connect(env: WorkflowEnvironment, settings: Settings) -> GraphrunnerClient:
    """A client the way the CLI makes one (connect_temporal: the settings' codec and blobs)."""
    return await GraphrunnerClient.connect(
        settings,
        address=env.client.service_client.config.target_host,
        namespace=env.client.namespace,
    )


def plain_client(env: WorkflowEnvironment) -> Client:
    """A client without graphrunner's converter or any codec: what the server holds."""
    return Client(env.client.service_client, namespace=env.client.namespace)


@pytest.fixture
def tq() -> str:
    return f"tq-{uuid.uuid4().hex[:10]}"


async def waiting(client: GraphrunnerClient, lifetime_id: str) -> None:
    for _ in range(600):
        if await client.pending(lifetime_id):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{lifetime_id} never asked")


def payloads_in(message: Message, *, skip_search_attributes: bool = True) -> Iterator[Payload]:
    """Every Payload in a proto tree (search attributes apart: the server indexes them)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        name = field.message_type.full_name
        if skip_search_attributes and name == "temporal.api.common.v1.SearchAttributes":
            continue
        if field.message_type.GetOptions().map_entry:
            items = list(value.values())
        else:
            items = list(value) if field.is_repeated else [value]
        for item in items:
            if not isinstance(item, Message):
                continue
            if name == "temporal.api.common.v1.Payload" or isinstance(item, Payload):
                yield item  # type: ignore[misc]
            else:
                yield from payloads_in(item, skip_search_attributes=skip_search_attributes)


def key_ids(history: WorkflowHistory) -> list[str]:
    """The key id of every encrypted payload of a raw history, in event order."""
    found = []
    for event in history.events:
        for p in payloads_in(event):
            if p.metadata.get("encoding") == b"binary/encrypted":
                found.append(p.metadata["encryption-key-id"].decode())
    return found


# The SDK core's own bookkeeping in marker events (a local activity's seq, attempt, type and
# times; a patch's id) is written by the core, not by the data converter: it stays plain.
_CORE_MARKER_KEYS = {
    "seq",
    "attempt",
    "activity_id",
    "activity_type",
    "complete_time",
    "backoff",
    "original_schedule_time",
    "activation_index",
    "id",
    "deprecated",
}


def sdk_marker_data(kind: str | None, p: Payload) -> bool:
    if kind != "marker_recorded_event_attributes":
        return False
    data = json.loads(p.data)
    return isinstance(data, dict) and set(data) <= _CORE_MARKER_KEYS


def is_reference(p: Payload) -> bool:
    return p.metadata.get("messageType", b"").endswith(b"ExternalStorageReference")


# -- the codec itself ------------------------------------------------------------------------


def payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


async def test_codec_round_trips_and_leaves_nothing_plain() -> None:
    codec = EncryptionCodec(parse_keys(f"k1={K1}"))
    original = [payload(f"{MARKER} one"), payload("two"), Payload()]
    encoded = await codec.encode(original)
    for p in encoded:
        assert p.metadata["encoding"] == b"binary/encrypted"
        assert p.metadata["encryption-key-id"] == b"k1"
        assert MARKER.encode() not in p.SerializeToString()
    assert encoded[0].data[:12] != encoded[1].data[:12], "a fresh nonce per payload"
    assert await codec.decode(encoded) == original
    # A payload written before encryption was turned on reads as it is.
    assert await codec.decode([payload("old")]) == [payload("old")]


async def test_codec_detects_tampering_and_never_returns_garbage() -> None:
    codec = EncryptionCodec(parse_keys(f"k1={K1}"))
    [sealed] = await codec.encode([payload(MARKER)])
    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:20] + bytes([sealed.data[20] ^ 1]) + sealed.data[21:]
    with pytest.raises(DecryptionError, match="key 'k1'.*does not decrypt.*altered"):
        await codec.decode([flipped])
    truncated = Payload()
    truncated.CopyFrom(sealed)
    truncated.data = sealed.data[:10]
    with pytest.raises(DecryptionError, match="too short"):
        await codec.decode([truncated])


async def test_the_key_id_is_bound_to_the_ciphertext() -> None:
    # Two ids for the same key: relabelling a payload's key id must not decrypt it.
    codec = EncryptionCodec(parse_keys(f"k1={K1},k2={K1}"))
    [sealed] = await codec.encode([payload(MARKER)])
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata["encryption-key-id"] = b"k2"
    with pytest.raises(DecryptionError, match="key 'k2'"):
        await codec.decode([relabelled])


async def test_rotation_new_key_encrypts_old_keys_decrypt() -> None:
    old = EncryptionCodec(parse_keys(f"k1={K1}"))
    rotated = EncryptionCodec(parse_keys(f"k2={K2},k1={K1}"))
    [under_k1] = await old.encode([payload("a")])
    [under_k2] = await rotated.encode([payload("b")])
    assert under_k2.metadata["encryption-key-id"] == b"k2"
    assert await rotated.decode([under_k1, under_k2]) == [payload("a"), payload("b")]
    with pytest.raises(DecryptionError) as missing:
        await old.decode([under_k2])
    assert "key 'k2'" in str(missing.value) and "GRAPHRUNNER_CODEC_KEYS" in str(missing.value)
    assert missing.value.key_id == "k2"
    wrong = EncryptionCodec(parse_keys(f"k1={K2}"))  # another key under the same id
    with pytest.raises(DecryptionError, match="key named 'k1'.*is not the one"):
        await wrong.decode([under_k1])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("k1", "key #1 is not '<key id>=<base64 key>'"),
        (f"={K1}", "key #1 has an empty key id"),
        ("k1=not base64!", "key #1 ('k1') is not valid base64"),
        (f"k1={base64.b64encode(b'x' * 16).decode()}", "key #1 ('k1') is 16 bytes, not 32"),
        (f"k1={K1},k1={K2}", "key #2 ('k1') repeats a key id"),
        (f"k 1={K1}", "key #1 has key id 'k 1'"),
    ],
    ids=["no-equals", "empty-id", "bad-base64", "short", "repeated-id", "space-in-id"],
)
def test_bad_keys_fail_the_settings_without_echoing_key_material(value: str, message: str) -> None:
    with pytest.raises(GraphrunnerError) as caught:
        Settings.from_env({"GRAPHRUNNER_CODEC_KEYS": value})
    text = str(caught.value)
    assert text.startswith("bad setting GRAPHRUNNER_CODEC_KEYS: ")
    assert message in text
    for secret in (K1, K2, "not base64!"):
        assert secret not in text


def test_encrypted_records_need_keys() -> None:
    with pytest.raises(GraphrunnerError, match="bad setting GRAPHRUNNER_ENCRYPT_RECORDS: needs"):
        Settings.from_env({"GRAPHRUNNER_ENCRYPT_RECORDS": "true"})


def test_record_fields_are_sealed_bound_to_their_row_and_refused_without_keys() -> None:
    cipher = RecordCipher(parse_keys(f"k1={K1}"))
    row = {
        "execution_id": "e1",
        "result_inline": json.dumps({"s": MARKER}),
        "error": f"boom {MARKER}",
        "notes": {"reasks": [MARKER]},
        "node": "plain-node",
    }
    sealed = cipher.seal_fields("e1", row)
    assert MARKER not in json.dumps(sealed)
    assert sealed["node"] == "plain-node"
    assert open_fields(cipher, sealed) == row
    assert open_fields(None, row) == row, "plain rows read without keys"
    with pytest.raises(DecryptionError, match="encrypted \\(key 'k1'\\): set GRAPHRUNNER_CODEC"):
        open_fields(None, sealed)
    moved = {**sealed, "execution_id": "e2"}  # a sealed value copied into another row
    with pytest.raises(DecryptionError, match="does not decrypt"):
        open_fields(cipher, moved)
    blob = cipher.seal_bytes(MARKER.encode(), execution_id="e1", column="result")
    assert open_blob(cipher, blob, execution_id="e1", column="result") == MARKER.encode()
    with pytest.raises(DecryptionError, match="result blob of execution e1 is encrypted"):
        open_blob(None, blob, execution_id="e1", column="result")


# -- lifetimes on the real server --------------------------------------------------------------


async def run_lifetime(
    env: WorkflowEnvironment, settings: Settings
) -> tuple[GraphrunnerClient, str]:
    """Run the secret graph to its end with a worker and client made from ``settings``."""
    client = await connect(env, settings)
    async with build_worker(client):
        handle = await client.start(graph(), "input-secret")
        await waiting(client, handle.id)
        await client.respond(handle.id, "review", {"ok": True, "note": f"{MARKER} answer"})
        result = await handle.result()
    assert result.output["answer"] == {"ok": True, "note": f"{MARKER} answer"}
    return client, handle.id


async def test_history_payloads_and_blobs_are_ciphertext_and_the_client_reads_plaintext(
    env: WorkflowEnvironment, tmp_path: Path, tq: str
) -> None:
    settings = settings_for(tmp_path, tq, f"k1={K1}")
    client, lifetime_id = await run_lifetime(env, settings)

    raw = await plain_client(env).get_workflow_handle(lifetime_id).fetch_history()
    assert MARKER not in raw.to_json(), "no plaintext anywhere in the server's history"
    payloads = [p for e in raw.events for p in payloads_in(e)]
    references = [p for p in payloads if is_reference(p)]
    assert references, "the big result went to the blob store (history keeps a reference)"
    plain = [
        (e.event_id, e.WhichOneof("attributes"), p)
        for e in raw.events
        for p in payloads_in(e)
        if not is_reference(p)
        and p.metadata.get("encoding") != b"binary/encrypted"
        and not sdk_marker_data(e.WhichOneof("attributes"), p)
    ]
    assert plain == [], "every payload is encrypted (inputs, results, answers, memo, summaries)"
    assert set(key_ids(raw)) == {"k1"}

    blobs = sorted((tmp_path / "blobs" / "payloads").iterdir())
    assert blobs, "payload blobs were written"
    for path in blobs:
        data = path.read_bytes()
        assert MARKER.encode() not in data
        stored = Payload()
        stored.ParseFromString(data)
        assert stored.metadata["encoding"] == b"binary/encrypted", "encrypted before storage"

    # Through graphrunner, with the keys: plaintext, step names included.
    status = await client.status(lifetime_id)
    assert [s.node for s in status.steps] == ["bulk", "ask", "review", "done"]
    result = await client.result(lifetime_id)
    assert result.output["answer"]["note"] == f"{MARKER} answer"
    [stored] = [
        e.activity_task_completed_event_attributes.result
        for e in raw.events
        if e.HasField("activity_task_completed_event_attributes")
        and any(is_reference(p) for p in e.activity_task_completed_event_attributes.result.payloads)
    ]
    [big] = await client.temporal.data_converter.decode(stored.payloads)
    assert big["output"]["secret"] == f"{MARKER} input-secret", "the blob decrypts back"
    assert len(big["output"]["big"]) > 256 * 1024
    from graphrunner.client._replay import fetch_histories, replay_histories

    histories = await fetch_histories(client.temporal, [lifetime_id])
    verdicts = await replay_histories(
        histories, blobs=client.blobs, codec=client.temporal.data_converter.payload_codec
    )
    assert [v.ok for v in verdicts] == [True], verdicts


# -- the codec server and the temporal CLI -------------------------------------------------------


def to_json(payloads: list[Payload]) -> dict[str, Any]:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


def from_json(body: dict[str, Any]) -> list[Payload]:
    return [
        Payload(
            metadata={k: base64.b64decode(v) for k, v in p.get("metadata", {}).items()},
            data=base64.b64decode(p.get("data", "")),
        )
        for p in body["payloads"]
    ]


@contextlib.contextmanager
def running_codec_server(environ: dict[str, str]) -> Iterator[str]:
    """``graphrunner codec-server`` as a real process on a free port; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphrunner", "codec-server", "--port", "0"],
        cwd=ROOT,
        env={**environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("codec server on http://127.0.0.1:"), line
        yield line.split()[3]
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def codec_server(tmp_path: Path) -> Iterator[str]:
    """The codec server with key k1, a local blob store and the UI's origin."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHRUNNER_")}
    environ.update(
        GRAPHRUNNER_CODEC_KEYS=f"k1={K1}",
        GRAPHRUNNER_HOME=str(tmp_path / "state"),
        GRAPHRUNNER_BLOB_URL=str(tmp_path / "blobs"),
        GRAPHRUNNER_CODEC_CORS_ORIGINS=UI,
    )
    with running_codec_server(environ) as url:
        yield url


async def test_codec_server_and_temporal_cli_show_plaintext_to_the_ui_origin_only(
    env: WorkflowEnvironment, tmp_path: Path, tq: str, codec_server: str
) -> None:
    settings = settings_for(tmp_path, tq, f"k1={K1}")
    _, lifetime_id = await run_lifetime(env, settings)
    raw = await plain_client(env).get_workflow_handle(lifetime_id).fetch_history()
    first = raw.events[0].workflow_execution_started_event_attributes.input.payloads
    [reference] = [p for e in raw.events for p in payloads_in(e) if is_reference(p)]
    ui = {"Origin": UI, "X-Namespace": env.client.namespace}

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{codec_server}/decode", json=to_json(list(first)), headers=ui) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == UI
            [decoded] = from_json(await r.json())
        assert MARKER not in first[0].SerializeToString().decode(errors="replace")
        assert "input-secret" in decoded.data.decode(), "the lifetime input, in clear"

        # The Web UI opens a stored payload with /download; /decode fetches it too, unless
        # asked to keep references (the UI lists history without fetching every blob).
        async with http.post(f"{codec_server}/download", json=to_json([reference])) as r:
            assert r.status == 200
            [big] = from_json(await r.json())
        assert json.loads(big.data)["output"]["big"].startswith(MARKER)
        async with http.post(f"{codec_server}/decode", json=to_json([reference])) as r:
            assert from_json(await r.json()) == [big]
        kept = f"{codec_server}/decode?preserveStorageRefs=true"
        async with http.post(kept, json=to_json([reference])) as r:
            [same] = from_json(await r.json())
        assert (same.metadata, same.data) == (reference.metadata, reference.data)
        async with http.post(f"{codec_server}/download", json=to_json(list(first))) as r:
            assert r.status == 400 and "external-storage references only" in await r.text()

        # Encoding (the UI starting or signalling) encrypts with the current key.
        async with http.post(f"{codec_server}/encode", json=to_json([payload("x")])) as r:
            [sealed] = from_json(await r.json())
        assert sealed.metadata["encryption-key-id"] == b"k1"

        preflight = {
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
        }
        async with http.options(f"{codec_server}/decode", headers=preflight) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == UI
            allowed = r.headers["Access-Control-Allow-Headers"].split(",")
            assert {"content-type", "x-namespace", "authorization"} <= set(allowed)
            assert "POST" in r.headers["Access-Control-Allow-Methods"]
        evil = {**preflight, "Origin": "https://evil.example"}
        async with http.options(f"{codec_server}/decode", headers=evil) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
        async with http.post(
            f"{codec_server}/decode", json=to_json(list(first)), headers={"Origin": evil["Origin"]}
        ) as r:
            assert r.status == 403 and "input-secret" not in await r.text()

    address = env.client.service_client.config.target_host
    show = [temporal_binary(), "workflow", "show", "-w", lifetime_id, "--address", address]
    show += ["--namespace", env.client.namespace]
    plain = subprocess.run(show, capture_output=True, text=True, timeout=60, check=True)
    assert MARKER not in plain.stdout, "without the codec server: ciphertext"
    decoded_text = subprocess.run(
        [*show, "--codec-endpoint", codec_server],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f'"note":"{MARKER} answer"' in decoded_text.stdout, "the result, in clear"
    as_json = subprocess.run(
        [*show, "-o", "json", "--codec-endpoint", codec_server],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    shown = WorkflowHistory.from_json(lifetime_id, as_json.stdout)
    payloads = [p for e in shown.events for p in payloads_in(e)]
    assert not [p for p in payloads if p.metadata.get("encoding") == b"binary/encrypted"]
    started = shown.events[0].workflow_execution_started_event_attributes
    assert b"input-secret" in started.input.payloads[0].data
    summaries = [e.user_metadata.summary.data for e in shown.events if e.HasField("user_metadata")]
    assert b'"bulk \xc2\xb7 1"' in summaries, "step summaries in clear too"


# -- rotation and missing keys ---------------------------------------------------------------


async def start_waiting(env: WorkflowEnvironment, settings: Settings) -> str:
    """Start the secret graph under ``settings`` and leave it waiting for its answer."""
    client = await connect(env, settings)
    async with build_worker(client):
        handle = await client.start(graph(), "input-secret")
        await waiting(client, handle.id)
    return handle.id


async def test_rotation_a_waiting_lifetime_finishes_under_the_new_key_old_payloads_still_read(
    env: WorkflowEnvironment, tmp_path: Path, tq: str
) -> None:
    lifetime_id = await start_waiting(env, settings_for(tmp_path, tq, f"k1={K1}"))

    # Worker and client restarted with the new key first, the old one kept.
    rotated = await connect(env, settings_for(tmp_path, tq, f"k2={K2},k1={K1}"))
    async with build_worker(rotated):
        await rotated.respond(lifetime_id, "review", {"ok": True, "note": "rotated"})
        result = await rotated.result(lifetime_id)
    assert result.output["answer"] == {"ok": True, "note": "rotated"}

    raw = await plain_client(env).get_workflow_handle(lifetime_id).fetch_history()
    ids = key_ids(raw)
    answered = next(
        i
        for i, e in enumerate(raw.events)
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    )
    before = key_ids(WorkflowHistory(lifetime_id, list(raw.events[:answered])))
    after = key_ids(WorkflowHistory(lifetime_id, list(raw.events[answered:])))
    assert set(before) == {"k1"}, "written before the rotation: the old key"
    assert set(after) == {"k2"}, "everything new (the answer, the result): the new key"
    assert ids == before + after
    # The old payloads (the input, the big result in the blob store) still read.
    status = await rotated.status(lifetime_id)
    assert [s.node for s in status.steps] == ["bulk", "ask", "review", "done"]
    [stored] = [p for e in raw.events for p in payloads_in(e) if is_reference(p)]
    [big] = await rotated.temporal.data_converter.decode([stored])
    assert big["output"]["secret"] == f"{MARKER} input-secret"


async def stalled(client: GraphrunnerClient, lifetime_id: str) -> str:
    raw = client.temporal.get_workflow_handle(lifetime_id)
    for _ in range(300):
        history = await raw.fetch_history()
        if any(e.HasField("workflow_task_failed_event_attributes") for e in history.events):
            info = await client.status(lifetime_id)
            assert info.status == "running", "the lifetime did not fail"
            assert info.stalled is not None
            return info.stalled
        await asyncio.sleep(0.1)
    raise AssertionError(f"{lifetime_id}: no workflow task failed")


async def test_a_worker_without_the_key_stalls_the_lifetime_until_one_with_it_runs(
    env: WorkflowEnvironment, tmp_path: Path, tq: str
) -> None:
    lifetime_id = await start_waiting(env, settings_for(tmp_path, tq, f"k1={K1}"))
    reader = await connect(env, settings_for(tmp_path, tq, f"k2={K2},k1={K1}"))

    keyless = await connect(env, settings_for(tmp_path, tq, f"k2={K2}"))
    async with build_worker(keyless):
        # A signal needs no worker to be accepted; the worker then cannot read the history.
        await reader.answer_by_signal(lifetime_id, "review", {"ok": True, "note": "late"})
        why = await stalled(reader, lifetime_id)
    assert "encrypted with key 'k1'" in why and "GRAPHRUNNER_CODEC_KEYS" in why, why

    async with build_worker(reader):  # a worker with the key: the lifetime goes on
        result = await reader.result(lifetime_id)
    assert result.output["answer"] == {"ok": True, "note": "late"}


async def test_a_wrong_key_under_the_same_id_is_a_clear_error_never_garbage(
    env: WorkflowEnvironment, tmp_path: Path, tq: str
) -> None:
    lifetime_id = await start_waiting(env, settings_for(tmp_path, tq, f"k1={K1}"))
    impostor = await connect(env, settings_for(tmp_path, tq, f"k1={K2}"))
    with pytest.raises(DecryptionError) as caught:
        await impostor.status(lifetime_id)
    assert "key named 'k1' in GRAPHRUNNER_CODEC_KEYS is not the one" in str(caught.value)
    keyless = await connect(env, settings_for(tmp_path, tq, None))
    with pytest.raises(DecryptionError, match="encrypted \\(key 'k1'\\) and this process has no"):
        await keyless.status(lifetime_id)


# -- encrypted execution records ------------------------------------------------------------


async def test_encrypted_records_hold_no_plaintext_and_read_back_through_the_client(
    env: WorkflowEnvironment, tmp_path: Path, tq: str, state_db_url: str
) -> None:
    from graphrunner.codec._records import SEALED_MAGIC
    from graphrunner.stores._schema import attempts, executions
    from tests.test_cli_lifetimes import cli_env, graphrunner

    settings = settings_for(
        tmp_path,
        tq,
        f"k1={K1}",
        encrypt_records=True,
        database_url=state_db_url,
        inline_limit_bytes=2000,  # the big result goes to a record blob
    )
    client, lifetime_id = await run_lifetime(env, settings)

    with client.records.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sqlalchemy.select(executions))]
        tries = [dict(r._mapping) for r in conn.execute(sqlalchemy.select(attempts))]
    assert MARKER not in repr(rows) + repr(tries), "no plaintext in the state DB"
    by_node = {r["node"]: r for r in rows}
    # What queries and costs need stays in clear.
    assert set(by_node) == {"bulk", "ask", "review", "done"}
    assert {r["status"] for r in rows} == {"succeeded"} and by_node["bulk"]["tenant"] == "default"
    assert by_node["review"]["result_inline"].startswith("grenc1:")
    assert by_node["bulk"]["result_inline"] is None and by_node["bulk"]["result_uri"]
    record_blobs = list((tmp_path / "blobs" / "results").rglob("*.json"))
    assert record_blobs and all(p.read_bytes().startswith(SEALED_MAGIC) for p in record_blobs)
    assert not [p for p in record_blobs if MARKER.encode() in p.read_bytes()]

    # Through the client, with the keys: plaintext.
    records = {r.node: r for r in await client.history(lifetime_id)}
    assert records["review"].result_value() == {"ok": True, "note": f"{MARKER} answer"}
    streamed = b"".join([c async for c in client.stream_result(records["bulk"])])
    assert json.loads(streamed)["secret"] == f"{MARKER} input-secret"

    # Without the keys: a clear error, not ciphertext.
    keyless = GraphrunnerClient(
        client.temporal, settings=settings_for(tmp_path, tq, None, database_url=state_db_url)
    )
    with pytest.raises(DecryptionError, match="encrypted \\(key 'k1'\\): set GRAPHRUNNER_CODEC"):
        await keyless.history(lifetime_id)
    with pytest.raises(DecryptionError, match="result blob of execution .* is encrypted"):
        _ = [c async for c in keyless.stream_result(records["bulk"])]
    keyless.records.close()

    environ = cli_env(
        GRAPHRUNNER_DATABASE_URL=state_db_url, GRAPHRUNNER_BLOB_URL=str(tmp_path / "blobs")
    )
    shown = graphrunner(
        "result", lifetime_id, "bulk", env={**environ, "GRAPHRUNNER_CODEC_KEYS": f"k1={K1}"}
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["secret"] == f"{MARKER} input-secret"
    refused = graphrunner("result", lifetime_id, "bulk", env=environ)
    assert refused.returncode == 2 and MARKER not in refused.stdout
    assert "encrypted (key 'k1'): set GRAPHRUNNER_CODEC_KEYS" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


FAILING_YAML = """
name: failing
version: 1.0.0
nodes:
  - {name: boom, kind: task, impl: "tests.codec_nodes:boom", retry: {max_attempts: 1}}
edges:
  - {from: boom, type: FINAL}
"""


async def test_failure_messages_are_encrypted_on_the_server_and_clear_to_graphrunner(
    env: WorkflowEnvironment, tmp_path: Path, tq: str
) -> None:
    settings = settings_for(tmp_path, tq, f"k1={K1}")
    client = await connect(env, settings)
    failing = parse_graph(FAILING_YAML, file=str(ROOT / "tests" / "failing.yaml"))
    async with build_worker(client):
        handle = await client.start(failing, "input-secret")
        with pytest.raises(WorkflowFailureError) as caught:
            await client.result(handle.id)
    # The SDK decrypts the failure for the caller: the error says what went wrong.
    assert f"cannot handle {MARKER} input-secret" in str(caught.value.cause)
    raw = await plain_client(env).get_workflow_handle(handle.id).fetch_history()
    assert MARKER not in raw.to_json(), "failure messages and stack traces are encrypted"
    failed = [
        e.workflow_execution_failed_event_attributes.failure
        for e in raw.events
        if e.HasField("workflow_execution_failed_event_attributes")
    ]
    assert [f.message for f in failed] == ["Encoded failure"]

    info = await client.status(handle.id)
    assert info.status == "failed"
    assert info.failure is not None and f"cannot handle {MARKER} input-secret" in info.failure


async def test_a_codec_token_is_required_when_set(tmp_path: Path) -> None:
    from graphrunner.codec._server import serve_codec

    settings = settings_for(tmp_path, "tq", f"k1={K1}", codec_token="s3cret-token")
    body = to_json([payload("x")])
    async with serve_codec(settings, port=0) as url, aiohttp.ClientSession() as http:
        async with http.post(f"{url}/encode", json=body) as r:
            assert r.status == 401
        wrong = {"Authorization": "Bearer nope"}
        async with http.post(f"{url}/encode", json=body, headers=wrong) as r:
            assert r.status == 401
        right = {"Authorization": "Bearer s3cret-token"}
        async with http.post(f"{url}/encode", json=body, headers=right) as r:
            assert r.status == 200
            [sealed] = from_json(await r.json())
        async with http.post(f"{url}/decode", json=to_json([sealed]), headers=right) as r:
            assert from_json(await r.json()) == [payload("x")]
        # A preflight carries no credentials: it is answered without the token.
        preflight = {"Origin": UI, "Access-Control-Request-Method": "POST"}
        async with http.options(f"{url}/decode", headers=preflight) as r:
            assert r.status == 204


@pytest.mark.timeout(90)
def test_dev_serves_the_codec_server_and_points_its_ui_at_it(tmp_path: Path) -> None:
    from tests.test_cli_lifetimes import cli_env, free_port

    ports = {name: free_port() for name in ("dev", "ui", "codec")}
    environ = cli_env(
        GRAPHRUNNER_HOME=str(tmp_path / "home"),
        GRAPHRUNNER_DEV_PORT=str(ports["dev"]),
        GRAPHRUNNER_DEV_UI_PORT=str(ports["ui"]),
        GRAPHRUNNER_CODEC_PORT=str(ports["codec"]),
        GRAPHRUNNER_CODEC_KEYS=f"k1={K1}",
        TEMPORAL_CONFIG_FILE=str(tmp_path / "no-temporal.toml"),
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphrunner", "dev"],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().decode()
        codec = f"http://127.0.0.1:{ports['codec']}"
        assert f"codec server on {codec}" in ready, ready
        ui = f"http://localhost:{ports['ui']}"

        async def check() -> None:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{ui}/api/v1/settings") as r:
                    shown = await r.json()
                assert shown["Codec"]["Endpoint"] == codec, shown["Codec"]
                preflight = {"Origin": ui, "Access-Control-Request-Method": "POST"}
                async with http.options(f"{codec}/decode", headers=preflight) as r:
                    assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == ui

        asyncio.run(check())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def test_graphrunner_imports_no_crypto_or_http_server_until_asked() -> None:
    # A user's sandboxed workflow that imports graphrunner re-imports it in the sandbox,
    # where cryptography fails (SystemError); the CLI must not pay aiohttp's import on
    # every command.
    code = (
        "import sys, graphrunner, graphrunner.stores, graphrunner.plugin, graphrunner.client._cli;"
        "print(sorted(m for m in ('cryptography', 'aiohttp') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stderr
