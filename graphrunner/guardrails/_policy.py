"""Guardrail policies: rules over execution telemetry, loaded from YAML with exact positions.

A policy file::

    version: 1                       # optional; the only version so far
    rules:
      - name: lifetime-token-cap
        when: sum(tokens_used) > 10_000
        scope: lifetime              # execution | lifetime | tenant
        action: abort_lifetime       # reject_execution | pause_lifetime | abort_lifetime
        message: token budget exhausted

Conditions may read ``state.<field>``, a number (or integer) field of the lifetime state as
the execution was called with it. A graph's own policy must read only fields the graph
declares as numbers (validation says so); a worker's global or tenant rule that reads a
field a lifetime's graph does not declare as a number does not apply to that lifetime
(`for_state`).

``scope`` says which executions a rule's aggregates range over: the execution being checked
alone (``execution``), every execution of its lifetime so far (``lifetime``), or the
tenant's executions (``tenant``). Bare fields always read the execution being checked.

Precedence. Policies come in three layers: global (the worker's), graph (referenced from
the graph's YAML) and tenant (per-tenant overrides). Every rule of every layer is enforced;
rules are matched **by name**, and when two layers define the same name the one with higher
precedence replaces the other: **tenant > global > graph**. Graph authors can therefore add
rules (and so tighten any limit, under a new name) but cannot loosen or drop a platform rule;
only an operator's tenant override can, e.g. with a bigger cap or ``when: false``. See
`merge_policies`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from graphrunner._yaml import (
    Composed,
    Limits,
    Loc,
    Unreadable,
    compose,
    node_position,
    read_text,
    scalar_locator,
    unknown_key,
)
from graphrunner.errors import PolicyError
from graphrunner.guardrails._ast import STATE, Boolean, ExprType, Name, walk
from graphrunner.guardrails._eval import Row
from graphrunner.guardrails._expr import MAX_LENGTH, Expression, parse_expression

if TYPE_CHECKING:
    from graphrunner.graph._model import StateField

__all__ = [
    "NUMBER_STATE_TYPES",
    "Action",
    "Policy",
    "Reserve",
    "Rule",
    "Scope",
    "for_state",
    "load_policy",
    "merge_policies",
    "parse_policy",
    "policy_json_schema",
    "state_fields",
]

#: State field types a rule can read (as numbers).
NUMBER_STATE_TYPES: Final = ("number", "integer")

_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
_DUPLICATE = "duplicate_rule_name"
# A policy is a short list of short rules; these bound what a hostile file can cost.
POLICY_LIMITS = Limits(max_bytes=1024 * 1024, max_depth=20, max_values=10_000)
MAX_MESSAGE = 1000


class Scope(StrEnum):
    """Which executions a rule's aggregates range over."""

    EXECUTION = "execution"
    LIFETIME = "lifetime"
    TENANT = "tenant"


class Action(StrEnum):
    """What happens when a rule's condition holds."""

    REJECT_EXECUTION = "reject_execution"
    PAUSE_LIFETIME = "pause_lifetime"
    ABORT_LIFETIME = "abort_lifetime"


def _to_expression(value: object) -> Expression:
    if isinstance(value, Expression):
        if value.type is not ExprType.BOOLEAN:
            raise ValueError(f"a condition must be true or false, not a {value.type}")
        return value
    if not isinstance(value, str):
        raise ValueError("expected an expression string")
    try:
        return parse_expression(value)
    except PolicyError as exc:
        raise ValueError(f"column {exc.column}: {exc.message}") from None


_WHEN_SCHEMA = {
    "type": "string",
    "maxLength": MAX_LENGTH,
    "description": "A condition over telemetry, e.g. 'sum(tokens_used) > 10000'. Fields: "
    "tokens_used, tokens_in, tokens_out, cost_usd, latency_ms, iteration, attempt, "
    "elapsed_s; node, kind, model, status (strings); state.<field>, a number or integer field "
    "of the lifetime state the graph declares. Aggregates: sum, max, min, avg, count, "
    'each optionally filtered: sum(cost_usd where node == "search"), count(where kind == '
    '"task").',
}

#: A rule's condition: text in YAML and JSON, an `Expression` in Python.
When = Annotated[
    Expression,
    PlainValidator(_to_expression),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(_WHEN_SCHEMA),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Rule(_Strict):
    """One guardrail: when ``when`` holds over the executions in ``scope``, take ``action``."""

    name: str = Field(pattern=_NAME_PATTERN, description="Unique within the policy.")
    when: When
    scope: Scope = Field(description="Which executions the rule's aggregates range over.")
    action: Action
    message: str = Field(default="", description="Told to the user when the rule fires.")

    def fires(
        self, *, current: Row | None = None, executions: Sequence[Row] = (), elapsed_s: float = 0.0
    ) -> bool:
        """Whether the condition holds for ``current``, aggregates ranging over ``executions``.

        A one-off check (see `Expression.evaluate`), e.g. to try a rule on sample executions;
        the interceptor compiles rules once and keeps running totals instead.
        """
        return (
            self.when.evaluate(current=current, executions=executions, elapsed_s=elapsed_s) is True
        )


class Reserve(_Strict):
    """What an execution reserves against tenant budgets when its node declares no ceiling."""

    tokens: int = Field(default=0, ge=0, le=2**53, description="Tokens per execution.")
    cost_usd: float = Field(
        default=0.0, ge=0, le=1e9, allow_inf_nan=False, description="US dollars per execution."
    )


class Policy(_Strict):
    """A set of guardrail rules with unique names."""

    version: Literal[1] = 1
    rules: list[Rule] = Field(description="The rules, all enforced.")
    # Left out of every dump when unset: policies without it serialise (and hash) as before.
    reserve: Reserve | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Per-execution reservation against tenant budgets for nodes without "
        "max_tokens / max_cost_usd (default: nothing reserved).",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Policy:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                context = {"name": rule.name}
                raise PydanticCustomError(_DUPLICATE, "rule name '{name}' is used twice", context)
            seen.add(rule.name)
        return self

    def rule(self, name: str) -> Rule:
        """The rule called ``name``; KeyError if there is none."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


def state_fields(rule: Rule) -> list[str]:
    """The lifetime state fields ``rule`` reads (``state.<field>``), each once, in order."""
    found = (
        node.path[1]
        for node in walk(rule.when.tree)
        if isinstance(node, Name) and node.path[0] == STATE and len(node.path) == 2
    )
    return list(dict.fromkeys(found))


def for_state(policy: Policy, state: Mapping[str, StateField] | None) -> Policy:
    """``policy`` without the rules that read a state field ``state`` does not declare as a number.

    Args:
        policy: An effective policy (layers merged).
        state: The lifetime's graph's declared state (`graphrunner.AgentGraph.state`).
    """
    numbers = {name for name, f in (state or {}).items() if f.type in NUMBER_STATE_TYPES}
    kept = [rule for rule in policy.rules if set(state_fields(rule)) <= numbers]
    if len(kept) == len(policy.rules):
        return policy
    return Policy(rules=kept, reserve=policy.reserve)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy YAML file.

    Raises:
        PolicyError: Every problem found (``issues``), each with file, line and column.
    """
    file = str(path)
    try:
        text = read_text(path, limits=POLICY_LIMITS)
    except Unreadable as exc:
        message = f"cannot read the policy file: {exc.message}"
        raise PolicyError(message, file=file, line=exc.line, column=exc.column) from None
    return parse_policy(text, file=file)


def parse_policy(text: str, *, file: str = "<string>") -> Policy:
    """Parse and validate policy YAML given as text; see `load_policy`."""
    doc = compose(text, limits=POLICY_LIMITS)
    errors = [
        PolicyError(problem.message, file=file, line=problem.line, column=problem.column)
        for problem in doc.problems
    ]
    data = doc.data
    if not doc.complete or () in doc.broken:
        raise _grouped(errors)
    if not isinstance(data, Mapping):
        root = doc.values.get(())
        line, column = node_position(root) if root is not None else (1, 1)
        found = "an empty file" if data is None else _found(data)
        message = f"expected a mapping with a 'rules' list, found {found}"
        raise _grouped([*errors, PolicyError(message, file=file, line=line, column=column)])
    if "rules" not in data and {"nodes", "edges"} <= set(data):
        line, column = node_position(doc.values[()])
        message = (
            "this is a graph file (it has 'nodes' and 'edges'), not a guardrail policy; "
            "a policy is a mapping with a 'rules' list"
        )
        raise PolicyError(message, file=file, line=line, column=column)
    # Problems in the YAML left some values unread (None): check the rest, not those.
    rules = data.get("rules")
    if isinstance(rules, list):
        errors += _parse_conditions(rules, text, doc, file)
        errors += _duplicate_names(rules, doc, file)
        errors += _long_messages(rules, doc, file)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        errors += _schema_errors(exc, doc, file)
    if errors:
        raise _grouped(errors)
    return policy


def merge_policies(
    global_: Policy | None = None, graph: Policy | None = None, tenant: Policy | None = None
) -> Policy:
    """Combine the three policy layers into the one that applies.

    A rule name defined in several layers takes the rule of the layer with the highest
    precedence: tenant, then global, then graph (see the module docstring for why). Rules
    are listed global first, then graph, then tenant, each where its name first appears.
    """
    layers = [layer for layer in (global_, graph, tenant) if layer is not None]
    order = dict.fromkeys(rule.name for layer in layers for rule in layer.rules)
    winner = {
        rule.name: rule for layer in (graph, global_, tenant) if layer for rule in layer.rules
    }
    reserve = next((p.reserve for p in (tenant, global_, graph) if p and p.reserve), None)
    return Policy(rules=[winner[name] for name in order], reserve=reserve)


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the policy YAML format."""
    schema = Policy.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://graphrunner.dev/schema/guardrail-policy.json"
    schema["title"] = "graphrunner guardrail policy"
    return schema


def _grouped(errors: list[PolicyError]) -> PolicyError:
    errors.sort(key=lambda e: (e.line or 0, e.column or 0))
    if len(errors) == 1:
        return errors[0]
    first = errors[0]
    message = f"{len(errors)} problems in policy {first.file}"
    return PolicyError(
        message, file=first.file, line=first.line, column=first.column, issues=errors
    )


def _parse_conditions(rules: list[Any], text: str, doc: Composed, file: str) -> list[PolicyError]:
    errors: list[PolicyError] = []
    for i, rule in enumerate(rules):
        node = doc.values.get(("rules", i, "when"))
        if not isinstance(rule, dict) or node is None or ("rules", i, "when") in doc.broken:
            continue
        subject = _subject(doc, ("rules", i, "when"))
        if isinstance(node, yaml.ScalarNode):
            # The node's source text, not the loaded value: 'when: 5' is the expression "5".
            locate = scalar_locator(text, node)
            try:
                rule["when"] = parse_expression(node.value, file=file, locate=locate)
                continue
            except PolicyError as exc:
                line, column, message = exc.line, exc.column, exc.message
        else:
            line, column = node_position(node)
            message = "expected an expression string, e.g. sum(tokens_used) > 1000"
        errors.append(PolicyError(subject + message, file=file, line=line, column=column))
        rule["when"] = Expression(tree=Boolean(False))  # a stand-in: the error is reported
    return errors


def _duplicate_names(rules: list[Any], doc: Composed, file: str) -> list[PolicyError]:
    errors: list[PolicyError] = []
    first: dict[str, int] = {}
    for i, rule in enumerate(rules):
        name = rule.get("name") if isinstance(rule, dict) else None
        node = doc.values.get(("rules", i, "name"))
        if not isinstance(name, str) or node is None:
            continue
        line, column = node_position(node)
        if name in first:
            message = (
                f"duplicate rule name {name!r} (first used at line {first[name]}); "
                "expected a unique name"
            )
            errors.append(PolicyError(message, file=file, line=line, column=column))
        else:
            first[name] = line
    return errors


def _long_messages(rules: list[Any], doc: Composed, file: str) -> list[PolicyError]:
    # A message is shown in the lifetime's current details when its rule pauses it, and the
    # server refuses details past 20,000 bytes: keep each far below.
    errors = []
    for i, rule in enumerate(rules):
        message = rule.get("message") if isinstance(rule, dict) else None
        node = doc.values.get(("rules", i, "message"))
        if isinstance(message, str) and len(message) > MAX_MESSAGE and node is not None:
            line, column = node_position(node)
            text = f"{_subject(doc, ('rules', i, 'message'))}{len(message):,} characters; "
            text += f"at most {MAX_MESSAGE:,} are allowed"
            errors.append(PolicyError(text, file=file, line=line, column=column))
    return errors


def _schema_errors(exc: ValidationError, doc: Composed, file: str) -> list[PolicyError]:
    errors = []
    for error in exc.errors():
        if error["type"] == _DUPLICATE:
            continue  # reported by _duplicate_names, with positions
        loc: Loc = tuple(error["loc"])
        if loc in doc.broken or error["type"] == "missing" and loc[:-1] in doc.broken:
            continue  # the YAML problem that left it unread or incomplete is reported
        if error["type"] == "extra_forbidden":
            node = doc.keys.get(loc)
            model = Policy if len(loc) == 1 else Rule
            message = unknown_key(loc[-1], model.model_fields)
        elif error["type"] == "missing":
            node = doc.nearest(loc[:-1])
            message = f"missing required key {loc[-1]!r}"
        elif error["type"] == "string_pattern_mismatch":
            node = doc.nearest(loc)
            message = (
                "expected a name of letters, digits, '_' and '-' starting with a letter or '_' "
                f"(at most 64 characters), found {_found(error['input'])}"
            )
        elif error["type"] in ("model_type", "dict_type"):
            node = doc.nearest(loc)
            message = f"expected a mapping, found {_found(error['input'])}"
        else:
            node = doc.nearest(loc)
            expected = (
                error["msg"].replace("Input should be", "expected").replace("Value error, ", "")
            )
            message = f"{expected}, found {_found(error['input'])}"
        subject = _subject(
            doc, loc[:-1] if error["type"] in ("extra_forbidden", "missing") else loc
        )
        line, column = node_position(node) if node is not None else (1, 1)
        errors.append(PolicyError(f"{subject}{message}", file=file, line=line, column=column))
    return errors


def _subject(doc: Composed, loc: Loc) -> str:
    if len(loc) < 2 or loc[0] != "rules" or not isinstance(loc[1], int):
        return f"{'.'.join(map(str, loc))}: " if loc else ""
    rule = doc.data["rules"][loc[1]]
    name = rule.get("name") if isinstance(rule, dict) else None
    label = f"rule {name!r}" if isinstance(name, str) else f"rule #{loc[1] + 1}"
    rest = ".".join(map(str, loc[2:]))
    return f"{label}: {rest}: " if rest else f"{label}: "


def _found(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value) if len(repr(value)) <= 60 else f"a {type(value).__name__}"
