"""What graphrunner's data converter costs over plain pydantic, measured in this process.

graphrunner's client and worker use ``graphrunner.stores.data_converter``: pydantic conversion
plus external payload storage (payloads of 256 KiB or more go to the blob store). The bench
payloads are far below the threshold, so nothing is stored; what remains is the converter's
bookkeeping. That is well under the run-to-run noise of the latency rows, so it is measured
here directly instead, on the real payloads of one graphrunner lifetime.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    StorageDriverActivityInfo,
    StorageDriverStoreContext,
)

__all__ = ["converter_cost"]

_CONTEXT = ActivitySerializationContext(
    namespace="default",
    workflow_id="bench",
    workflow_type="AgentLifetime",
    activity_type="graphrunner.run_task",
    activity_id="1",
    activity_task_queue="bench",
    is_local=False,
)
_STORE = StorageDriverStoreContext(
    target=StorageDriverActivityInfo(id="1", type="graphrunner.run_task", namespace="default")
)


def _bind(converter: DataConverter) -> DataConverter:
    # What the worker does per workflow activation and per activity task (temporalio 1.35,
    # a private method): with external storage this copies the converter.
    bind = getattr(converter, "_with_contexts", None)
    if bind is None:
        return converter.with_context(_CONTEXT)
    bound: DataConverter = bind(_CONTEXT, _STORE)
    return bound


async def _round_trip(converter: DataConverter, payloads: list[Payload]) -> float:
    began = time.perf_counter()
    for payload in payloads:
        # Once in the workflow worker and once in the activity worker.
        for _ in range(2):
            bound = _bind(converter)
            values = await bound.decode([payload])
            await bound.encode(values)
    return time.perf_counter() - began


async def converter_cost(
    converters: Mapping[str, DataConverter], payloads: list[Payload], steps: int, rounds: int = 25
) -> dict[str, float]:
    """Microseconds per Task+Plan step to bind, decode and re-encode a lifetime's payloads.

    ``payloads`` are every activity input and result of one ``steps``-step lifetime; each is
    handled twice (workflow side and activity side). The converters take turns, ``rounds``
    times; the median round counts.
    """
    times: dict[str, list[float]] = {name: [] for name in converters}
    for converter in converters.values():  # warm-up
        await _round_trip(converter, payloads)
    for i in range(rounds):
        order = list(converters.items())
        for name, converter in order if i % 2 == 0 else reversed(order):
            times[name].append(await _round_trip(converter, payloads))
    return {name: statistics.median(t) * 1e6 / steps for name, t in times.items()}
