"""The benchmark's environment: its own dev server, a Temporal runtime, CPU accounting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from graphrunner.client import DevServer

__all__ = ["CoreWarnings", "ProcessCpu", "dev_server", "log", "on_interrupt", "quiet_runtime"]

# Run (newest first) when Ctrl-C or SIGTERM ends the bench at once, e.g. to drop a database.
_INTERRUPT_CLEANUPS: list[Callable[[], None]] = []
_STARTED = time.perf_counter()  # progress lines say when, in seconds from here


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def on_interrupt(cleanup: Callable[[], None]) -> Iterator[None]:
    """Run ``cleanup`` if the bench is interrupted while this context is open."""
    _INTERRUPT_CLEANUPS.append(cleanup)
    try:
        yield
    finally:
        _INTERRUPT_CLEANUPS.remove(cleanup)


def log(message: str) -> None:
    """Progress goes to stderr, so ``--json`` output on stdout stays clean; with seconds."""
    print(f"{time.perf_counter() - _STARTED:5.1f}s {message}", file=sys.stderr, flush=True)


class ProcessCpu:
    """CPU seconds used by this process (client + both workers) and by the server process."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def read(self) -> tuple[float, float]:
        times = os.times()
        server = 0.0
        if self.server_pid is not None:
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{self.server_pid}/stat").read_text().rsplit(")", 1)[1]
                utime, stime = fields.split()[11:13]
                server = (int(utime) + int(stime)) / self.tick
        return times.user + times.system, server


class CoreWarnings(logging.Handler):
    """Counts the Temporal core's warnings by kind; shows the first of each kind on stderr.

    The core logs to stdout by default, which would break ``--json``; and a slow side can make
    it log hundreds of "workflow task duration exceeded" lines, which say more as one count.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        # Ids, sizes and durations differ between occurrences of the same warning.
        kind = re.sub(r"\S*\d\S*", "…", message)[:100]
        if not self.counts[kind]:
            log(f"temporal core: {message[:300]}")
        self.counts[kind] += 1


def quiet_runtime(handler: logging.Handler) -> Runtime:
    """A Temporal runtime whose core warnings go to ``handler`` instead of stdout."""
    logger = logging.getLogger("bench.temporal_core")
    logger.propagate = False
    logger.addHandler(handler)
    logs = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(
            logger=logger, append_log_fields_to_message=False, prepend_target_on_message=False
        ),
    )
    return Runtime(telemetry=TelemetryConfig(logging=logs))


@contextlib.asynccontextmanager
async def dev_server(runtime: Runtime | None = None) -> AsyncIterator[tuple[Client, DevServer]]:
    """A fresh tuned dev server on free ports in a temporary home, and a client to it."""
    with tempfile.TemporaryDirectory(prefix="graphrunner-bench-") as home:
        server = DevServer(home=Path(home), port=_free_port(), ui_port=_free_port(), headless=True)
        await server.start()
        loop = asyncio.get_running_loop()

        def interrupted(signum: signal.Signals) -> None:
            # Unwinding running workers on a signal can hang in worker shutdown; the bench is
            # a one-shot process, so stop the server, remove its files and leave at once.
            log(f"bench: {signum.name}: stopping the dev server")
            server.stop()
            shutil.rmtree(home, ignore_errors=True)
            for cleanup in reversed(_INTERRUPT_CLEANUPS):
                with contextlib.suppress(Exception):
                    cleanup()
            os._exit(128 + signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupted, signum)
        try:
            client = await Client.connect(
                server.address, data_converter=pydantic_data_converter, runtime=runtime
            )
            yield client, server
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            server.stop()
