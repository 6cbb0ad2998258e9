"""``graphrunner codec-server``: Temporal's codec server protocol, for the Web UI and CLI.

Routes (each also under ``/<namespace>/``, for ``temporal --codec-endpoint`` templating):

- ``POST /encode``: body and answer are a JSON ``Payloads`` message
  (``{"payloads": [{"metadata": {k: base64}, "data": base64}]}``); payloads are encrypted,
  and those over the payload threshold go to the blob store, as a graphrunner client would;
- ``POST /decode``: payloads are decrypted; external-storage references (payloads over the
  threshold that history keeps as a reference) are fetched from the blob store first, unless
  ``?preserveStorageRefs=true``, which returns them as they are;
- ``POST /download``: every payload must be an external-storage reference; each is fetched
  from the blob store and decrypted (the Web UI calls it when a user opens a stored payload).

CORS answers the origins of ``GRAPHRUNNER_CODEC_CORS_ORIGINS`` (the Web UI's), preflight
included, allowing the headers ``content-type``, ``x-namespace`` and ``authorization``; a
request from any other origin is refused (403). Requests without an ``Origin`` (the CLI) are
served. With ``GRAPHRUNNER_CODEC_TOKEN``, every request but a preflight must carry
``Authorization: Bearer <token>``. Anyone who can reach the server (and pass the token)
can decrypt every payload: bind it to localhost or a private network.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from aiohttp import hdrs, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.sdk.v1 import ExternalStorageReference
from temporalio.converter import ExternalStorage, PayloadCodec

from graphrunner._settings import Settings
from graphrunner.errors import GraphrunnerError

__all__ = ["codec_app", "serve_codec"]

_ALLOWED_HEADERS = "content-type,x-namespace,authorization"
_REFERENCE_TYPE = ExternalStorageReference.DESCRIPTOR.full_name.encode()
_LEGACY_REFERENCE = b"json/external-storage-reference"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_reference(payload: Payload) -> bool:
    encoding = payload.metadata.get("encoding")
    return encoding == _LEGACY_REFERENCE or (
        encoding == b"json/protobuf" and payload.metadata.get("messageType") == _REFERENCE_TYPE
    )


async def _read(request: web.Request) -> list[Payload]:
    body = await request.read()
    try:
        message = json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(
            text=f"the body is not a JSON Payloads message ({{'payloads': [...]}}): {exc}"
        ) from None
    return list(message.payloads)


def _answer(payloads: Sequence[Payload]) -> web.Response:
    text = json_format.MessageToJson(Payloads(payloads=payloads), indent=None)
    return web.Response(text=text, content_type="application/json")


def codec_app(
    codec: PayloadCodec,
    *,
    storage: ExternalStorage | None,
    origins: Sequence[str],
    token: str | None = None,
) -> web.Application:
    """The codec server's aiohttp application.

    Args:
        codec: Encrypts and decrypts (`graphrunner.codec.EncryptionCodec`).
        storage: The external storage payloads over the threshold go to (the blob store);
            None: references are refused.
        origins: Browser origins answered (the Web UI's), e.g. ``http://localhost:8233``.
        token: When set, requests must carry ``Authorization: Bearer <token>``.
    """
    allowed = {o.strip().rstrip("/") for o in origins if o.strip()}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and origin.rstrip("/") not in allowed:
            return web.Response(
                status=403, text=f"origin {origin} is not in GRAPHRUNNER_CODEC_CORS_ORIGINS"
            )
        cors = {hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin, hdrs.VARY: "Origin"} if origin else {}
        if origin:
            cors[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
        if request.method == "OPTIONS":
            return web.Response(
                status=204,
                headers={
                    **cors,
                    hdrs.ACCESS_CONTROL_ALLOW_METHODS: "POST, OPTIONS",
                    hdrs.ACCESS_CONTROL_ALLOW_HEADERS: _ALLOWED_HEADERS,
                    hdrs.ACCESS_CONTROL_MAX_AGE: "600",
                },
            )
        response: web.StreamResponse
        if token is not None and not _authorized(request, token):
            response = web.Response(
                status=401, text="missing or wrong 'Authorization: Bearer <token>'"
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = web.Response(status=exc.status, text=exc.text)
            except GraphrunnerError as exc:  # DecryptionError, BlobNotFound, BlobIntegrityError
                response = web.Response(status=400, text=str(exc))
        response.headers.update(cors)
        return response

    async def encode(request: web.Request) -> web.StreamResponse:
        payloads = await codec.encode(await _read(request))
        if storage is not None:
            payloads = await storage._store_payload_sequence(payloads)
        return _answer(payloads)

    async def decode(request: web.Request) -> web.StreamResponse:
        payloads = await _read(request)
        if request.query.get("preserveStorageRefs", "").lower() != "true":
            payloads = await _retrieve(payloads)
        plain = [p if _is_reference(p) else (await codec.decode([p]))[0] for p in payloads]
        return _answer(plain)

    async def download(request: web.Request) -> web.StreamResponse:
        payloads = await _read(request)
        if not all(_is_reference(p) for p in payloads):
            raise web.HTTPBadRequest(text="/download takes external-storage references only")
        return _answer(await codec.decode(await _retrieve(payloads)))

    async def _retrieve(payloads: list[Payload]) -> list[Payload]:
        if not any(_is_reference(p) for p in payloads):
            return payloads
        if storage is None:
            raise web.HTTPBadRequest(text="this codec server has no blob store to fetch from")
        return await storage._retrieve_payload_sequence(payloads)

    app = web.Application(middlewares=[guard])
    for prefix in ("", "/{namespace}"):
        app.router.add_route("POST", f"{prefix}/encode", encode)
        app.router.add_route("POST", f"{prefix}/decode", decode)
        app.router.add_route("POST", f"{prefix}/download", download)
        for name in ("encode", "decode", "download"):
            app.router.add_route("OPTIONS", f"{prefix}/{name}", _preflight)
    return app


async def _preflight(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)  # the guard answers preflights before this runs


def _authorized(request: web.Request, token: str) -> bool:
    given = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token)


@contextlib.asynccontextmanager
async def serve_codec(
    settings: Settings, *, port: int | None = None, origins: Sequence[str] = ()
) -> AsyncIterator[str]:
    """Serve the codec server the settings describe; yield its URL.

    Args:
        settings: Codec keys, blob store, bind address, port, CORS origins and token.
        port: Overrides ``codec_port`` (0: a free port).
        origins: More CORS origins than the settings' (``graphrunner dev`` adds its UI's).

    Raises:
        GraphrunnerError: No codec keys are set, or the port is taken.
    """
    from graphrunner.stores import data_converter, open_blobs

    converter = data_converter(settings, open_blobs(settings))
    if converter.payload_codec is None:
        raise GraphrunnerError(
            "the codec server needs keys: set GRAPHRUNNER_CODEC_KEYS ('graphrunner codec-key' "
            "makes one)"
        )
    app = codec_app(
        converter.payload_codec,
        storage=converter.external_storage,
        origins=[*settings.codec_cors_origins.split(","), *origins],
        token=settings.codec_token.get_secret_value() if settings.codec_token else None,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.codec_bind, settings.codec_port if port is None else port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise GraphrunnerError(
            f"the codec server cannot listen on {settings.codec_bind}:"
            f"{settings.codec_port if port is None else port} ({exc.strerror}): set "
            "GRAPHRUNNER_CODEC_PORT"
        ) from None
    bound = runner.addresses[0][1] if runner.addresses else settings.codec_port
    host = "127.0.0.1" if settings.codec_bind in ("0.0.0.0", "::") else settings.codec_bind
    try:
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
