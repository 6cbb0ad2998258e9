"""Node code for the encryption tests (tests/test_codec.py): a secret, a big one, a question."""

from __future__ import annotations

from typing import Any

from graphrunner import NodeContext, NodeOutput, PlanResult, plan, task

MARKER = "PLAINTEXT-MARKER-7f3a"
"""A string every secret value holds: found anywhere at rest, encryption failed."""
BIG = 400_000
"""Characters of the big result: over the 256 KiB payload threshold, so it goes to blobs."""


@task
async def bulk(ctx: NodeContext, data: Any) -> dict[str, Any]:
    """A small secret and a big one (the big one leaves history for the blob store)."""
    return {"secret": f"{MARKER} {data}", "big": (MARKER + "-") * (BIG // (len(MARKER) + 1))}


@task
async def boom(ctx: NodeContext, data: Any) -> Any:
    """Fail with the secret in the message (the failure text is encrypted too)."""
    raise ValueError(f"cannot handle {MARKER} {data}")


@plan
async def ask(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Ask the person about the secret (not the big one)."""
    return PlanResult.goto("review", data={"secret": results[-1].output["secret"]})


@plan
async def done(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Finish with the answer."""
    return PlanResult.finish({"answer": results[-1].output, "marker": MARKER})
