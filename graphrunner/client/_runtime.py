"""Long-running pieces the CLI composes: a worker until Ctrl-C, and an embedded server."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.client import Client
from temporalio.runtime import Runtime

from graphrunner._settings import Settings
from graphrunner.client._client import connect_temporal
from graphrunner.client._devserver import DevServer, port_open
from graphrunner.errors import ServerUnreachable
from graphrunner.guardrails._sources import PolicySource
from graphrunner.worker import build_worker, load_policies, open_recorder

__all__ = [
    "add_app_dir",
    "embedded_server",
    "load_policies",
    "open_recorder",
    "serve_worker",
    "ui_codec_endpoint",
]


def add_app_dir(app_dir: Path) -> None:
    """Make node implementations under ``app_dir`` importable (like uvicorn's --app-dir)."""
    path = str(app_dir.resolve())
    if path not in sys.path:
        sys.path.insert(0, path)


async def serve_worker(
    client: Client, settings: Settings, *, ready: str = "", policies: PolicySource | None = None
) -> None:
    """Run a worker until SIGINT/SIGTERM, then shut it down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    recorder = open_recorder(settings)
    worker = build_worker(client, settings=settings, recorder=recorder, policies=policies)
    try:
        async with worker:
            if ready:
                print(ready, flush=True)
            await stop.wait()
    finally:
        if recorder is not None:
            recorder.records.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def embedded_server(
    settings: Settings, *, headless: bool, reuse: bool, runtime: Runtime | None = None
) -> AsyncIterator[tuple[Client, DevServer | None]]:
    """Yield a client to a reachable server, starting the embedded dev server if needed.

    Args:
        settings: Settings (ports, home directory).
        headless: Start the dev server without its Web UI.
        reuse: Use a server already answering at the configured address instead of failing.
        runtime: The client's Temporal runtime (e.g. one serving metrics); default: the
            process's.
    """
    try:
        client = await connect_temporal(settings, runtime=runtime)
    except ServerUnreachable:
        client = None
    if client is not None:
        if not reuse:
            raise ServerUnreachable(
                f"a Temporal server already answers at localhost:{settings.dev_port}; stop it, or "
                "run 'graphrunner worker' against it"
            )
        yield client, None
        return
    hard = settings.isolation == "hard" and settings.tenant is not None
    server = DevServer(
        home=settings.home,
        port=settings.dev_port,
        ui_port=settings.dev_ui_port,
        headless=headless,
        # Hard isolation: the tenant's namespace, created with the search attributes.
        namespace=settings.namespace_for(settings.tenant)
        if hard and settings.tenant
        else "default",
        ui_codec_endpoint=ui_codec_endpoint(settings),
    )
    if not headless and port_open("127.0.0.1", settings.dev_ui_port):
        server.headless = True  # the UI port is taken; run without a UI rather than fail
    await server.start()
    try:
        yield await _connect_when_ready(settings, server.address, runtime), server
    finally:
        server.stop()


def ui_codec_endpoint(settings: Settings) -> str | None:
    """The codec server the dev server's UI decodes payloads with (None: no codec keys)."""
    if settings.codec_keys is None:
        return None
    return settings.codec_url or f"http://127.0.0.1:{settings.codec_port}"


async def _connect_when_ready(
    settings: Settings, address: str, runtime: Runtime | None, timeout: float = 30.0
) -> Client:
    # The port opens a moment before the frontend answers, longer on a busy machine.
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await connect_temporal(settings, target_host=address, runtime=runtime)
        except ServerUnreachable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
