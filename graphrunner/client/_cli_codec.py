"""The ``codec-server`` and ``codec-key`` commands: payload encryption the UI can read.

``graphrunner codec-server`` serves Temporal's codec server protocol (``/encode``,
``/decode``, ``/download``) with the codec keys, so the Web UI (its codec endpoint setting,
or ``start-dev --ui-codec-endpoint``) and ``temporal ... --codec-endpoint`` show plaintext.
``graphrunner codec-key`` prints a new key for ``GRAPHRUNNER_CODEC_KEYS``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
from typing import Annotated

import typer

from graphrunner.client._cli import _fail, _run, _settings, app

__all__: list[str] = []

_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@app.command("codec-server")
def codec_server(
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Port (default GRAPHRUNNER_CODEC_PORT; 0: any free)."),
    ] = None,
) -> None:
    """Serve /encode, /decode and /download with the codec keys until Ctrl-C.

    Anyone who reaches it can decrypt every payload: it binds to GRAPHRUNNER_CODEC_BIND
    (127.0.0.1 by default) and, with GRAPHRUNNER_CODEC_TOKEN, asks for a bearer token.
    """
    settings = _settings()

    async def go() -> None:
        from graphrunner.codec._server import serve_codec  # aiohttp: ~0.3 s to import

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with serve_codec(settings, port=port) as url:
            print(
                f"codec server on {url} (Web UI origins: {settings.codec_cors_origins}); "
                f"temporal workflow show -w ID --codec-endpoint {url}"
                + (" --codec-auth 'Bearer <token>'" if settings.codec_token else "")
                + "; Ctrl-C stops",
                flush=True,
            )
            await stop.wait()

    _run(go())


@app.command("codec-key")
def codec_key(
    key_id: Annotated[str, typer.Argument(help="The new key's id (e.g. k2, 2026-12).")],
) -> None:
    """Print a new random AES-256 key as '<id>=<base64>' for GRAPHRUNNER_CODEC_KEYS."""
    if not _KEY_ID.match(key_id):
        _fail(f"key id {key_id!r}: use 1 to 64 letters, digits, '.', '_' or '-'")
    print(f"{key_id}={base64.b64encode(os.urandom(32)).decode()}")
