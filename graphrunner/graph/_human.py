"""Human-input tasks: the ``human:`` section of a task, its prompt template, its answer checks.

Everything here runs in the lifetime workflow too (answers are validated there, by the
``graphrunner.respond`` update's validator), so it is pure and bounded: the prompt template
substitutes ``{path.to.value}`` from the node's data and nothing else (no attribute access,
no expressions), and an answer is checked against a JSON Schema restricted to keywords whose
cost grows with the size of the answer, never faster: ``pattern``, ``patternProperties`` (a
regular expression may backtrack for ever on a hostile answer), ``uniqueItems`` (quadratic)
and ``$ref`` outside the schema are refused when the graph is validated.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_LABELS",
    "MAX_PROMPT",
    "MAX_SCHEMA_BYTES",
    "HumanSpec",
    "TimeoutResponse",
    "answer_problems",
    "render_prompt",
    "schema_problems",
]

MAX_PROMPT: Final = 4096
"""Characters of a prompt template."""
MAX_RENDERED: Final = 16 * 1024
"""Characters of a rendered question (longer ones are cut)."""
MAX_SCHEMA_BYTES: Final = 16 * 1024
"""JSON bytes of a response schema (it rides in the lifetime's memo while it waits)."""
MAX_ANSWER_BYTES: Final = 64 * 1024
"""JSON bytes of one answer."""
MAX_LABELS: Final = 16
MAX_LABEL: Final = 64
MAX_ASSIGNEE: Final = 255
MIN_TIMEOUT_S: Final = 1.0
MAX_TIMEOUT_S: Final = 366 * 24 * 3600.0
_ERRORS_SHOWN: Final = 5

#: Keywords whose cost is not linear in the answer (or that reach outside the schema).
REFUSED_KEYWORDS: Final = ("pattern", "patternProperties", "uniqueItems", "$dynamicRef")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeoutResponse(_Strict):
    """``on_timeout: {respond: <value>}``: when the deadline passes, answer with ``respond``."""

    respond: Any = Field(description="The answer given when nobody answered in time.")


class HumanSpec(_Strict):
    """What a human-input task asks, what answer it takes, and how long it waits.

    A task with ``human`` runs no code: the lifetime asks the question, waits in the workflow
    (no activity slot is held) and goes on with the answer as the task's output.
    """

    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT,
        description="The question, a template over the node's data: '{key}' or "
        "'{key.sub.0}' insert a value of the data ('{}' the whole data), '{{' and '}}' a "
        f"brace. At most {MAX_PROMPT} characters.",
    )
    response: dict[str, Any] | None = Field(
        default=None,
        description="JSON Schema of the answer (no 'pattern', 'patternProperties', "
        f"'uniqueItems' or remote '$ref'; at most {MAX_SCHEMA_BYTES // 1024} KiB). Default: any "
        "JSON value.",
    )
    model: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="A pydantic model 'package.module:Model' whose JSON Schema is the "
        "response schema: the loader converts and pins it, the workflow never imports it.",
    )
    timeout_s: float | None = Field(
        default=None,
        ge=MIN_TIMEOUT_S,
        le=MAX_TIMEOUT_S,
        allow_inf_nan=False,
        exclude_if=lambda value: value is None,
        description="How long to wait for an answer, seconds (1 s to 366 days). Default: for ever.",
    )
    on_timeout: Literal["fail"] | TimeoutResponse = Field(
        default="fail",
        description="What happens when timeout_s passes: 'fail' (the task fails with "
        "NodeFailed, the graph's failure handling applies) or {respond: <answer>} (checked "
        "against the schema when the graph is validated).",
    )
    assignee: str | None = Field(
        default=None,
        max_length=MAX_ASSIGNEE,
        exclude_if=lambda value: value is None,
        description="Who should answer (shown in pending lists).",
    )
    labels: list[str] = Field(
        default_factory=list,
        max_length=MAX_LABELS,
        description=f"Labels shown in pending lists (at most {MAX_LABELS}, "
        f"{MAX_LABEL} characters each).",
    )
    state: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="A declared lifetime state field the answer is folded into (through its "
        "reducer).",
    )

    @field_validator("labels")
    @classmethod
    def _short_labels(cls, labels: list[str]) -> list[str]:
        for label in labels:
            if not 1 <= len(label) <= MAX_LABEL:
                raise ValueError(f"a label has 1 to {MAX_LABEL} characters")
        return labels

    def schema_or_any(self) -> dict[str, Any]:
        """The response schema (``{}``, any JSON value, when none is declared)."""
        return self.response if self.response is not None else {}


# -- the prompt template --------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z0-9_.-]{0,256})\}")
_MISSING = object()


def _lookup(data: Any, path: str) -> Any:
    value = data
    for part in path.split(".") if path else ():
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def render_prompt(template: str, data: Any) -> str:
    """The question: ``template`` with each ``{path}`` replaced by that value of ``data``.

    A missing value renders as ``{path}`` itself (so the author sees what did not resolve),
    a string as itself, anything else as compact JSON. Nothing is evaluated.
    """

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        value = _lookup(data, match.group(1))
        if value is _MISSING:
            return token
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)

    text = _PLACEHOLDER.sub(replace, template)
    return text if len(text) <= MAX_RENDERED else text[: MAX_RENDERED - 1] + "…"


# -- schemas and answers --------------------------------------------------------------------


def _walk_keys(value: Any, path: str, found: list[str], depth: int = 0) -> None:
    if depth > 64:
        found.append(f"{path or '$'}: nested more than 64 levels deep")
        return
    if isinstance(value, dict):
        for key, sub in value.items():
            here = f"{path}/{key}"
            if key in REFUSED_KEYWORDS and not _is_property_name(path):
                found.append(
                    f"{here}: '{key}' is not allowed in a response schema (its cost on a "
                    "hostile answer is unbounded; check it in the next node instead)"
                )
            elif key == "$ref" and not (isinstance(sub, str) and sub.startswith("#")):
                found.append(f"{here}: only references inside the schema ('#/...') are allowed")
            _walk_keys(sub, here, found, depth + 1)
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            _walk_keys(sub, f"{path}/{i}", found, depth + 1)


def _is_property_name(path: str) -> bool:
    # Under "properties" (or "$defs"), keys are names the author chose, not keywords.
    return path.rsplit("/", 1)[-1] in ("properties", "$defs", "definitions")


def schema_problems(schema: dict[str, Any]) -> list[str]:
    """Why ``schema`` cannot be a response schema (empty: it can)."""
    import jsonschema

    size = len(json.dumps(schema, default=str))
    if size > MAX_SCHEMA_BYTES:
        return [f"the response schema is {size:,} bytes, more than {MAX_SCHEMA_BYTES:,}"]
    found: list[str] = []
    _walk_keys(schema, "", found)
    if found:
        return found
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/" + "/".join(str(p) for p in exc.absolute_path)
        return [f"not a valid JSON Schema at {where}: {exc.message}"]
    return []


def answer_problems(schema: dict[str, Any], data: Any) -> list[str]:
    """Why ``data`` is not an answer ``schema`` takes, each naming the field (``$.a.b``).

    The caller has checked the schema (`schema_problems`) and bounded the answer's size.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    problems = [f"{e.json_path}: {_short(e.message)}" for e in errors[:_ERRORS_SHOWN]]
    if len(errors) > _ERRORS_SHOWN:
        problems.append(f"and {len(errors) - _ERRORS_SHOWN} more")
    return problems


def _short(text: str) -> str:
    return text if len(text) <= 300 else text[:299] + "…"


def answer_size(data: Any) -> int:
    """JSON bytes of an answer."""
    return len(json.dumps(data, ensure_ascii=False, default=str).encode())


def model_schema(path: str) -> tuple[dict[str, Any] | None, str]:
    """The JSON Schema of the pydantic model at ``path`` ('package.module:Model').

    Imports user code: the loader and the builder call it, never the workflow.
    """
    import importlib

    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        return None, f"model '{path}' is not 'package.module:Model'"
    try:
        found: Any = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except Exception as exc:  # an import runs the module's code: report what it raised
        return None, f"cannot import model '{path}': {type(exc).__name__}: {exc}"
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        return None, f"'{path}' is not a pydantic model"
    return found.model_json_schema(), ""
