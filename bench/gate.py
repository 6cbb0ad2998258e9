"""A gate that holds running nodes until the benchmark releases them.

The idle-memory section starts lifetimes whose first node waits here, so that every lifetime
is cached by its worker and waiting on a running activity when the heap is measured. The
graphrunner Task (`bench.nodes.Hold`) and the baseline's activity (`bench.baseline_activities.
hold`) wait on the same gate. It lives at module level because that is the only thing both
reach: graphrunner instantiates a Task from its import path, with nothing of the caller's.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["GATE", "Gate"]


class Gate:
    """Counts the nodes waiting on it and lets them all go at once."""

    def __init__(self) -> None:
        self.waiting = 0
        self._open: asyncio.Event | None = None  # made in the running loop, on first use

    @property
    def _event(self) -> asyncio.Event:
        if self._open is None:
            self._open = asyncio.Event()
        return self._open

    async def wait(self) -> None:
        """Wait until `release` (counted in ``waiting`` meanwhile)."""
        self.waiting += 1
        try:
            await self._event.wait()
        finally:
            self.waiting -= 1

    async def until_waiting(self, count: int, *, timeout_s: float = 180.0) -> None:
        """Return once ``count`` nodes wait here.

        Raises:
            TimeoutError: They did not all arrive within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while self.waiting < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.waiting} of {count} nodes reached the gate")
            await asyncio.sleep(0.02)

    def release(self) -> None:
        """Let every waiting node go; the gate closes again for the next ones."""
        self._event.set()
        self._open = None


GATE = Gate()
