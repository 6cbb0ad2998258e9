"""Nodes of the code review example (graph.yaml): the parts that are code, not a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphrunner import NodeContext, NodeOutput, PlanResult, plan, task

SAMPLE = Path(__file__).parent / "sample.diff"


@task
async def parse(data: Any) -> dict[str, Any]:
    """Split a unified diff (``{"diff": ...}``, else sample.diff) into one unit per hunk."""
    diff = data.get("diff") if isinstance(data, dict) else None
    text = diff or SAMPLE.read_text(encoding="utf-8")
    units: list[dict[str, Any]] = []
    file = ""
    for line in text.splitlines():
        if line.startswith("+++ "):
            file = line[4:].removeprefix("b/")
        elif line.startswith("@@"):
            units.append({"unit": len(units) + 1, "file": file, "hunk": line, "lines": []})
        elif units and line[:1] in "+- " and not line.startswith(("--- ", "diff ")):
            units[-1]["lines"].append(line)
    return {"units": units, "files": sorted({u["file"] for u in units})}


@plan
async def fan_out(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Both reviews at once, each over every unit."""
    return PlanResult.goto("architecture", "quality", data=results[-1].output)


@plan
async def collect(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """The JOIN: both reviews (in the order they were chosen) go to the report writer."""
    architecture, quality = (r.output for r in results)
    return PlanResult.goto("report", data={"architecture": architecture, "quality": quality})
