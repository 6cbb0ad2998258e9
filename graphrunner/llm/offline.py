"""Scripting the offline provider: fixed answers, sequences, tool calls and injected failures.

The offline provider (litellm provider ``offline``, see `graphrunner.llm`) answers every model
call deterministically when no provider key is set or ``GRAPHRUNNER_LLM=offline``. A script
changes what it answers for one node (and optionally one lifetime or tier)::

    from graphrunner.llm import offline

    offline.script("write", answers=["draft one", "draft two"])  # then the last, again
    offline.script("search", tool_calls=[{"name": "web", "arguments": {"q": "temporal"}}])
    offline.script("*", fail="rate_limit", model="offline/standard", times=2)

or from a YAML or JSON file named by ``GRAPHRUNNER_LLM_SCRIPT`` (how worker processes and the
CLI are scripted)::

    scripts:
      - node: write
        answers: [draft one, draft two]
      - node: "*"
        fail: [{error: rate_limit, model: offline/standard, times: 2}]
      - node: review
        fn: myagents.offline:review    # fn(messages) -> answer, imported when the file loads

Scripts live in the process (like litellm's own provider registry): a worker process reads
the file when it starts; Python scripts apply to workers of the same process. Sequences and
``times`` count per process. Injected failures raise litellm's own exception classes, so
they are classified exactly as a provider's would be.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graphrunner.errors import GraphrunnerError

__all__ = [
    "Failure",
    "FailureKind",
    "Script",
    "Scripts",
    "ToolRound",
    "clear",
    "load_script",
    "script",
]

FailureKind = Literal[
    "rate_limit",
    "timeout",
    "server_error",
    "bad_request",
    "auth",
    "not_found",
    "context_window",
    "content_policy",
]


@dataclass(frozen=True)
class ToolRound:
    """An answer (from ``answers`` or ``fn``) that calls tools instead of answering.

    ``calls`` are ``{"name": ..., "arguments": {...}}`` (an ``"id"`` is optional): unlike
    ``tool_calls`` (the first round only), a sequence of answers can call tools in any round,
    as a model in a tool loop does.
    """

    calls: list[dict[str, Any]]


Answer = str | dict[str, Any] | list[Any] | ToolRound


class Failure(BaseModel):
    """A failure to inject.

    Attributes:
        error: Which litellm exception to raise (``rate_limit`` raises
            ``litellm.RateLimitError``, ``timeout`` ``litellm.Timeout``, ...).
        model: Only calls to this model fail (``offline/standard``, or a real model id that
            offline mode stands in for); None: every model.
        times: Fail this many calls, then answer; None: every call.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    error: FailureKind
    model: str | None = None
    times: int | None = Field(default=None, ge=1)

    def matches(self, model: str) -> bool:
        """Whether a call to ``model`` (with or without ``offline/``) is this failure's."""
        if self.model is None:
            return True
        bare = model.removeprefix("offline/")
        return self.model in (model, bare, "offline/" + bare)


class _ScriptSpec(BaseModel):
    """One script as a file writes it."""

    model_config = ConfigDict(extra="forbid")

    node: str = Field(min_length=1, max_length=64)
    lifetime: str | None = None
    tier: str | None = None
    answer: Answer | None = None
    answers: list[Answer] | None = Field(default=None, min_length=1)
    tool_calls: list[dict[str, Any]] | None = None
    fail: list[Failure] = Field(default_factory=list)
    fn: str | None = Field(default=None, pattern=r"^[\w.]+:[\w.]+$")


class _ScriptFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scripts: list[_ScriptSpec] = Field(default_factory=list, max_length=10_000)


@dataclass(kw_only=True, eq=False)
class Script:
    """What the offline provider answers one node (``"*"``: any node).

    Attributes:
        node: The node name, or ``"*"``.
        lifetime: Only in this lifetime (None: any).
        tier: Only for calls to this tier (None: any).
        answer: A fixed answer (text, or a value sent as JSON).
        answers: A sequence of answers, one per call; the last repeats.
        fn: Answers as a function of the messages (Python only).
        tool_calls: ``[{"name": ..., "arguments": {...}}]`` to call when tools are offered and
            no tool result is in the messages yet.
        fail: Failures to inject.
    """

    node: str
    lifetime: str | None = None
    tier: str | None = None
    answer: Answer | None = None
    answers: list[Answer] | None = None
    fn: Callable[[list[dict[str, Any]]], Answer] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    fail: list[Failure] = field(default_factory=list)
    from_file: bool = False
    _calls: int = 0
    _failed: dict[int, int] = field(default_factory=dict)

    def specificity(self) -> tuple[bool, bool, bool]:
        """More specific scripts win: a lifetime, a tier, a named node."""
        return (self.lifetime is not None, self.tier is not None, self.node != "*")

    def failure_for(self, model: str) -> Failure | None:
        """The failure to inject into this call to ``model``, counting it; None: answer."""
        for index, failure in enumerate(self.fail):
            if not failure.matches(model):
                continue
            done = self._failed.get(index, 0)
            if failure.times is not None and done >= failure.times:
                continue
            self._failed[index] = done + 1
            return failure
        return None

    def next_answer(self, messages: list[dict[str, Any]]) -> Answer | None:
        """The scripted answer of this call, or None for the default one."""
        if self.fn is not None:
            return self.fn(messages)
        if self.answers:
            chosen = self.answers[min(self._calls, len(self.answers) - 1)]
            self._calls += 1
            return chosen
        return self.answer


class Scripts:
    """The offline provider's scripts in this process."""

    def __init__(self) -> None:
        self._scripts: list[Script] = []

    def add(self, entry: Script) -> Script:
        """Add a script (a later one wins over an equally specific earlier one)."""
        self._scripts.append(entry)
        return entry

    def clear(self, *, from_file: bool | None = None) -> None:
        """Forget the scripts (only the file's, or only Python's, if ``from_file`` says)."""
        self._scripts = [
            s for s in self._scripts if from_file is not None and s.from_file != from_file
        ]

    def match(self, node: str, lifetime: str, tier: str) -> Script | None:
        """The script for a call of ``node`` in ``lifetime`` to ``tier``, if any."""
        found: Script | None = None
        for entry in self._scripts:
            if entry.node not in ("*", node):
                continue
            if entry.lifetime not in (None, lifetime) or entry.tier not in (None, tier):
                continue
            if found is None or entry.specificity() >= found.specificity():
                found = entry
        return found

    def load_file(self, path: Path) -> list[Script]:
        """Replace the file scripts with those of ``path`` (YAML or JSON).

        Raises:
            GraphrunnerError: The file cannot be read or does not validate.
        """
        loaded = load_script(path)
        self.clear(from_file=True)
        for entry in loaded:
            self.add(entry)
        return loaded


SCRIPTS = Scripts()
"""The process's scripts, which the offline provider reads."""


def script(
    node: str,
    *,
    lifetime: str | None = None,
    tier: str | None = None,
    answer: Answer | None = None,
    answers: list[Answer] | None = None,
    fn: Callable[[list[dict[str, Any]]], Answer] | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    fail: FailureKind | Failure | list[Failure] | None = None,
    model: str | None = None,
    times: int | None = None,
) -> Script:
    """Script the offline provider's answers to ``node`` (``"*"``: every node).

    Args:
        node: The node name, or ``"*"``.
        lifetime: Only in this lifetime.
        tier: Only for calls to this tier.
        answer: A fixed answer: text, or a dict or list sent as JSON.
        answers: One answer per call, in order; the last repeats.
        fn: ``fn(messages)`` gives the answer.
        tool_calls: Tools to call (``{"name": ..., "arguments": {...}}``) when the call
            offers tools and the messages hold no tool result yet.
        fail: A failure kind (with ``model`` and ``times``), or `Failure` objects.
        model: With ``fail`` as a kind: only this model fails.
        times: With ``fail`` as a kind: only this many calls fail.

    Returns:
        The script (pass it to `Scripts.clear` by clearing, or keep it to inspect).
    """
    failures: list[Failure]
    if fail is None:
        failures = []
    elif isinstance(fail, str):
        failures = [Failure(error=fail, model=model, times=times)]
    elif isinstance(fail, Failure):
        failures = [fail]
    else:
        failures = list(fail)
    return SCRIPTS.add(
        Script(
            node=node,
            lifetime=lifetime,
            tier=tier,
            answer=answer,
            answers=list(answers) if answers is not None else None,
            fn=fn,
            tool_calls=tool_calls,
            fail=failures,
        )
    )


def clear() -> None:
    """Forget every script set from Python (a script file's stay)."""
    SCRIPTS.clear(from_file=False)


def load_script(path: Path) -> list[Script]:
    """Read a script file (YAML or JSON: ``{"scripts": [...]}``).

    Raises:
        GraphrunnerError: The file cannot be read or does not validate.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    except (OSError, yaml.YAMLError) as exc:
        raise GraphrunnerError(f"cannot read LLM script {path}: {exc}") from None
    try:
        parsed = _ScriptFile.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise GraphrunnerError(f"invalid LLM script {path}: {where}: {first['msg']}") from None
    return [
        Script(
            **spec.model_dump(exclude={"fail", "fn"}),
            fail=list(spec.fail),
            fn=_import_fn(path, spec.node, spec.fn) if spec.fn else None,
            from_file=True,
        )
        for spec in parsed.scripts
    ]


def _import_fn(path: Path, node: str, name: str) -> Callable[[list[dict[str, Any]]], Answer]:
    """The ``fn`` a script file names (``package.module:function``), imported."""
    module_name, _, attr = name.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise GraphrunnerError(
            f"invalid LLM script {path}: node {node!r}: cannot import fn {name!r}: {exc}"
        ) from None
    if not callable(target):
        raise GraphrunnerError(
            f"invalid LLM script {path}: node {node!r}: {name!r} is not callable"
        )
    return target  # type: ignore[no-any-return]
