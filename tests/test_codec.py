"""Encryption at rest: the AES-GCM codec, key rotation, the codec server, encrypted records.

Real parts throughout: the session's Temporal dev server, workers and clients built from
settings the way ``graphrunner worker`` builds them, a local blob store, the real
``graphrunner codec-server`` process and the real ``temporal`` CLI.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

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
