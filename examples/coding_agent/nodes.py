"""Nodes of the coding agent (graph.yaml): the code between the person, the model and the tool.

The model calls are the graph's ``llm`` nodes; here are the plain steps: a keyword lookup over
the local corpus (the RAG step), the plans that route between the person, the designer and
the per-file branches, and the models of the structured answers.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from examples.coding_agent.tools import sandbox
from graphrunner import NodeContext, NodeOutput, PlanResult, TaskResult, plan, task

CORPUS = Path(__file__).parent / "corpus"
_WORD = re.compile(r"[a-z]{3,}")


class FileSpec(BaseModel):
    """One file the designer wants written."""

    path: str = Field(description="path inside the workspace, e.g. todo.py")
    purpose: str = Field(description="what the file does, in a sentence")


class Design(BaseModel):
    """The designer's answer: a clarifying question, or the files to write."""

    kind: Literal["clarify", "files"]
    question: str = ""
    app: str = ""
    files: list[FileSpec] = []


class Written(BaseModel):
    """The writer's answer once its tool wrote the file."""

    path: str
    summary: str


def _updating(result: PlanResult, **update: Any) -> PlanResult:
    """``result`` with a lifetime state update."""
    return result.model_copy(update={"update": update})


def _said(state: dict[str, Any]) -> str:
    return "\n".join(f"{m['role']}: {m['text']}" for m in state.get("conversation", []))


@plan
async def intake(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Add the person's description (or answer) to the conversation; look things up."""
    text = str(results[-1].output["answer"])
    said = [{"role": "user", "text": text}]
    return _updating(PlanResult.goto("lookup"), conversation=said)


def _tf(text: str) -> Counter[str]:
    return Counter(_WORD.findall(text.lower()))


@task
async def lookup(ctx: NodeContext) -> TaskResult:
    """The RAG step: rank the corpus's markdown docs against the conversation (TF-IDF)."""
    said = _said(ctx.state)
    query = _tf(" ".join(m["text"] for m in ctx.state.get("conversation", [])))
    docs = {p.name: p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.md"))}
    counts = {name: _tf(text) for name, text in docs.items()}
    idf = {w: math.log(1 + len(docs) / (1 + sum(w in c for c in counts.values()))) for w in query}
    scores = {
        name: round(sum(c[w] / sum(c.values()) * idf[w] for w in query), 6)
        for name, c in counts.items()
    }
    top = [n for n in sorted(docs, key=lambda n: (-scores[n], n)) if scores[n] > 0][:2]
    notes = "\n\n".join(f"[{n}]\n{docs[n].strip()}" for n in top)
    return TaskResult(output={"conversation": said, "notes": notes, "sources": top})


@plan
async def handoff(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Hand the lookup's output to the designer."""
    return PlanResult.goto("design", data=results[-1].output)


@plan
async def route(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Ask the person the designer's question, or write each planned file in its own branch."""
    design = Design.model_validate(results[-1].output)
    if design.kind == "clarify" or not design.files:
        question = design.question or "What should the app do?"
        said = [{"role": "agent", "text": question}]
        return _updating(
            PlanResult.goto("describe", data={"question": question}), conversation=said
        )
    workspace = re.sub(r"[^A-Za-z0-9_.-]", "-", ctx.lifetime_id)[:100]
    files = [
        {
            "workspace": workspace,
            "app": design.app,
            "path": f.path,
            "purpose": f.purpose,
            "feedback": "none",
        }
        for f in design.files
    ]
    listing = ", ".join(f.path for f in design.files)
    return _updating(
        PlanResult.map("write", files),
        conversation=[{"role": "agent", "text": f"Writing {listing}."}],
        workspace=workspace,
        specs={f["path"]: f for f in files},
        tries={f.path: 0 for f in design.files},
    )


@plan
async def check(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Read back the file the writer wrote and hand it to the validator."""
    written = Written.model_validate(results[-1].output)
    path = sandbox(ctx.state["workspace"]) / written.path
    content = path.read_text(encoding="utf-8") if path.is_file() else "(the file was not written)"
    tries = int(ctx.state.get("tries", {}).get(written.path, 0)) + 1
    return _updating(
        PlanResult.goto("validate", data={"path": written.path, "content": content}),
        current={"path": written.path},
        tries={written.path: tries},
    )


@plan
async def gate(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """The branch's pass/fail loop: a failed file is written again with the judge's notes."""
    verdict = results[-1].output
    path = ctx.state["current"]["path"]
    tries = int(ctx.state["tries"][path])
    if not verdict["passed"] and tries < int(ctx.config.get("max_tries", 3)):
        spec = dict(ctx.state["specs"][path], feedback=verdict["notes"] or "try again")
        return PlanResult.goto("write", data=spec)
    status = "ok" if verdict["passed"] else "failed"
    report = {"path": path, "status": status, "grade": verdict["overall"], "tries": tries}
    return PlanResult.goto("done", data=report)


@task
async def done(ctx: NodeContext, data: dict[str, Any]) -> dict[str, Any]:
    """The branch's report, which the JOIN collects."""
    return data


@plan
async def present(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """After the JOIN: show the person what was written and ask them to accept it."""
    reports = [r.output for r in results]
    folder = sandbox(ctx.state["workspace"])
    listing = "\n".join(
        f"- {r['path']}: {r['status']} (grade {r['grade']}, {r['tries']} tries)" for r in reports
    )
    return _updating(
        PlanResult.goto("accept", data={"folder": str(folder), "listing": listing}),
        conversation=[{"role": "agent", "text": f"Wrote:\n{listing}"}],
    )


@plan
async def decide(ctx: NodeContext, results: list[NodeOutput]) -> PlanResult:
    """Accepted: finish with the files. Rejected: the comment goes back to the designer."""
    answer = results[-1].output
    comment = str(answer.get("comment") or "").strip()
    said = [{"role": "user", "text": f"{answer['decision']}: {comment}".rstrip(": ")}]
    if answer["decision"] == "reject":
        return _updating(PlanResult.goto("lookup"), conversation=said)
    folder = sandbox(ctx.state["workspace"])
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    output = {"folder": str(folder), "files": files, "tries": ctx.state["tries"]}
    return _updating(PlanResult.finish(output), conversation=said)
