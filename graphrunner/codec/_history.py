"""Histories read through a graphrunner client come with their summaries and failures in clear.

With the codec on, the SDK encrypts the ``user_metadata`` of history events (the
``node · iteration`` summary of each step, the lifetime's static summary) and, with
``DefaultFailureConverterWithEncodedAttributes``, moves every failure's message and stack
trace into an encrypted payload (the message left on the server is ``Encoded failure``).
graphrunner's own readers of histories (``status``, ``steps``, ``replay``, ``fork``) take
step names and failure texts from the events, so `HistoryDecoder`, a client interceptor the
`GraphrunnerPlugin` installs with the codec, decrypts both in each page of events a client
fetches. Payload fields (inputs, results) stay as they are: the data converter decodes them
when they are read. What cannot be decrypted (a key this process lacks) is left as it is.
"""

from __future__ import annotations

import json

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    FetchWorkflowHistoryEventsInput,
    Interceptor,
    OutboundInterceptor,
    WorkflowHistoryEventAsyncIterator,
)

from graphrunner.codec._codec import EncryptionCodec, is_encrypted
from graphrunner.errors import DecryptionError

__all__ = ["HistoryDecoder", "decode_event"]

# Messages that hold payloads only: nothing below them is a failure or user metadata.
_OPAQUE = frozenset(
    {
        "temporal.api.common.v1.Payload",
        "temporal.api.common.v1.Payloads",
        "temporal.api.common.v1.Memo",
        "temporal.api.common.v1.SearchAttributes",
        "temporal.api.common.v1.Header",
    }
)
_FAILURE = Failure.DESCRIPTOR.full_name


def _plain(codec: EncryptionCodec, payload: Payload) -> Payload | None:
    if not is_encrypted(payload):
        return None
    try:
        return codec.decrypt(payload)
    except DecryptionError:
        return None  # the payload readers raise the clear error; this one stays as it is


def _open_failure(codec: EncryptionCodec, failure: Failure) -> None:
    while True:
        if failure.HasField("encoded_attributes"):
            plain = _plain(codec, failure.encoded_attributes)
            if plain is not None:
                try:
                    attrs = json.loads(plain.data)
                except ValueError:
                    attrs = None
                if isinstance(attrs, dict):
                    failure.message = str(attrs.get("message") or "")
                    failure.stack_trace = str(attrs.get("stack_trace") or "")
                    failure.ClearField("encoded_attributes")
        _open_failures(codec, failure, skip_cause=True)
        if not failure.HasField("cause"):
            return
        failure = failure.cause


def _open_failures(codec: EncryptionCodec, message: Message, *, skip_cause: bool = False) -> None:
    for field, value in message.ListFields():
        if field.message_type is None or field.message_type.full_name in _OPAQUE:
            continue
        if skip_cause and field.name == "cause":
            continue
        if field.message_type.GetOptions().map_entry:
            continue
        values = value if field.is_repeated else [value]
        for item in values:
            if field.message_type.full_name == _FAILURE:
                _open_failure(codec, item)
            else:
                _open_failures(codec, item)


def decode_event(codec: EncryptionCodec, event: HistoryEvent) -> None:
    """Decrypt ``event``'s summary and details and its failures' texts, in place."""
    if event.HasField("user_metadata"):
        for name in ("summary", "details"):
            if event.user_metadata.HasField(name):
                plain = _plain(codec, getattr(event.user_metadata, name))
                if plain is not None:
                    getattr(event.user_metadata, name).CopyFrom(plain)
    kind = event.WhichOneof("attributes")
    if kind is not None:
        _open_failures(codec, getattr(event, kind))


class _DecodedEvents(WorkflowHistoryEventAsyncIterator):
    """The inner iterator's pages, each event decrypted as it arrives."""

    def __init__(self, inner: WorkflowHistoryEventAsyncIterator, codec: EncryptionCodec) -> None:
        # The SDK's iterator keeps its client and input private; it is built from them only.
        super().__init__(inner._client, inner._input)
        self._inner = inner
        self._codec = codec

    async def fetch_next_page(self, *, page_size: int | None = None) -> None:
        """Fetch the inner iterator's next page and decrypt its events."""
        await self._inner.fetch_next_page(page_size=page_size)
        page = list(self._inner.current_page or [])
        for event in page:
            decode_event(self._codec, event)
        self._current_page = page
        self._current_page_index = 0
        self._next_page_token = self._inner.next_page_token


class _Outbound(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, codec: EncryptionCodec) -> None:
        super().__init__(next)
        self._codec = codec

    def fetch_workflow_history_events(
        self, input: FetchWorkflowHistoryEventsInput
    ) -> WorkflowHistoryEventAsyncIterator:
        return _DecodedEvents(self.next.fetch_workflow_history_events(input), self._codec)


class HistoryDecoder(Interceptor):
    """Client interceptor: fetched history events carry clear summaries and failure texts.

    Args:
        codec: The codec the lifetimes' payloads are encrypted with.
    """

    def __init__(self, codec: EncryptionCodec) -> None:
        self.codec = codec

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        """Wrap the client's history fetches."""
        return _Outbound(next, self.codec)
