"""Load an AgentGraph from YAML, keeping positions so every error points at its place.

Every problem in a file is reported at once. The YAML is read by the loader the policies use
(`graphrunner._yaml`: bounded in size, depth and alias expansion, positions for
everything); schema errors are reported with line and column, and a "did you mean" for a
misspelt key; then the graph-wide rules run on a best-effort graph in which each value that
failed validation is dropped or replaced by a stand-in, and the rules that would judge a
stand-in are skipped (`Unknowns`), so a schema error hides nothing and adds nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from graphrunner._yaml import (
    Composed,
    Limits,
    Loc,
    Problem,
    Unreadable,
    compose,
    node_position,
    read_text,
    unknown_key,
)
from graphrunner.errors import GraphError, GraphIssue, PolicyError
from graphrunner.graph._human import model_schema
from graphrunner.graph._model import GENERATED, AgentGraph, GraphDefaults, NodeSpec
from graphrunner.graph._validate import (
    BOUNDS,
    MAX_SUBGRAPH_DEPTH,
    MAX_SUBGRAPHS,
    Unknowns,
    validate_graph,
)
from graphrunner.guardrails._policy import Policy, load_policy

__all__ = ["GRAPH_LIMITS", "load_graph", "parse_graph"]

#: Bounds on a graph file: 4 MiB, 64 levels of nesting, 100,000 values after aliases.
GRAPH_LIMITS: Final = Limits(max_bytes=4 * 1024 * 1024, max_depth=64, max_values=100_000)

_RULES: Final = {
    "syntax": "yaml-syntax",
    "duplicate-key": "duplicate-key",
    "value": "schema",
    "limit": "too-large",
}
_TIMING: Final = frozenset({"timeout_s", "heartbeat_timeout_s", "retry"})
_OUT_OF_RANGE: Final = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}
)
_MAX_REPAIRS: Final = 4  # rounds of drop-and-retry before graph-wide rules are given up


def load_graph(path: str | Path, *, check_imports: bool = True) -> AgentGraph:
    """Read, parse and validate a graph YAML file.

    Sub-graphs its tasks name (``graph: other.yaml`` or ``graph: name@version``) are loaded
    and validated too, and pinned into the graph (`AgentGraph.subgraphs`).

    Args:
        path: The YAML file.
        check_imports: Also import every node implementation and check its kind.

    Raises:
        GraphError: With every problem found, each naming file, line, node or edge and rule.
    """
    return _load(path, check_imports=check_imports, trail=_Trail())


@dataclasses.dataclass
class _Trail:
    """The sub-graph files being loaded (to find cycles) and how many were loaded in all."""

    files: tuple[Path, ...] = ()
    loaded: list[int] = dataclasses.field(default_factory=lambda: [0])  # shared down the tree


def _load(path: str | Path, *, check_imports: bool, trail: _Trail) -> AgentGraph:
    file = str(path)
    try:
        text = read_text(path, limits=GRAPH_LIMITS)
    except Unreadable as exc:
        rule = "yaml-syntax" if exc.line is not None else "too-large" if exc.limit else "unreadable"
        raise GraphError(
            [
                GraphIssue(
                    rule=rule,
                    message=f"cannot read the graph file: {exc.message}",
                    file=file,
                    line=exc.line,
                    column=exc.column,
                )
            ]
        ) from None
    return parse_graph(text, file=file, check_imports=check_imports, _trail=trail)


def parse_graph(
    text: str,
    *,
    file: str = "<string>",
    check_imports: bool = True,
    resolve_files: bool = True,
    _trail: _Trail | None = None,
) -> AgentGraph:
    """Parse and validate graph YAML given as text; see `load_graph`.

    A ``guardrails`` path and sub-graph files are resolved from the directory of ``file``,
    or from the current directory when ``file`` is a placeholder such as ``<string>``.
    ``resolve_files=False`` (graphs a plan generated) refuses both instead of reading files.
    """
    doc = compose(text, limits=GRAPH_LIMITS)
    issues = [_yaml_issue(problem, file) for problem in doc.problems]
    data = doc.data
    if not doc.complete or () in doc.broken and not isinstance(data, Mapping):
        raise GraphError(issues)
    if not isinstance(data, Mapping):
        line, column = node_position(doc.values[()]) if () in doc.values else (1, 1)
        found = "an empty file" if data is None else _found(data)
        message = (
            f"a graph file must be a YAML mapping (name, version, nodes, edges), found {found}"
        )
        issues.append(
            GraphIssue(rule="schema", message=message, file=file, line=line, column=column)
        )
        raise GraphError(issues)

    def line_of(loc: Loc) -> int | None:
        node = doc.nearest(loc)
        return node.start_mark.line + 1 if node is not None else None

    data = dict(data)
    if "subgraphs" in data:
        key = doc.keys.get(("subgraphs",))
        issues.append(
            GraphIssue(
                rule="schema",
                message="subgraphs: filled in by the loader from the tasks' 'graph' "
                "references; remove it",
                file=file,
                line=key.start_mark.line + 1 if key is not None else None,
            )
        )
        del data["subgraphs"]
    if not resolve_files and "guardrails" in data:
        issues.append(
            GraphIssue(
                rule="guardrails",
                message="guardrails: a generated graph cannot name a policy file",
                file=file,
                line=doc.keys[("guardrails",)].start_mark.line + 1,
            )
        )
        del data["guardrails"]
    subgraphs, sub_issues, unresolved = _resolve_subgraphs(
        data,
        doc,
        file=file,
        check_imports=check_imports,
        trail=_trail or _Trail(),
        resolve_files=resolve_files,
    )
    issues += sub_issues
    if subgraphs:
        data["subgraphs"] = subgraphs
    if ("guardrails",) in doc.broken:
        del data["guardrails"]  # its YAML problem is reported
    elif "guardrails" in data:
        key = doc.keys[("guardrails",)]
        policy, policy_issues = _resolve_guardrails(
            data["guardrails"], file=file, line=key.start_mark.line + 1
        )
        issues += policy_issues
        if policy is None:
            del data["guardrails"]  # reported; the rest of the graph is still checked
        else:
            data["guardrails"] = policy
    issues += _resolve_human_models(data, doc, file=file, resolve_files=resolve_files)
    try:
        graph = AgentGraph.model_validate(data)
    except ValidationError as exc:
        issues += _schema_issues(exc, data, doc, file)
        best, unknowns = _best_effort(data, exc, doc)
        unknowns.subgraphs |= unresolved
        if best is not None:
            issues += validate_graph(
                best, file=file, line_of=line_of, check_imports=check_imports, unknowns=unknowns
            )
        raise GraphError(issues) from None
    issues += validate_graph(
        graph,
        file=file,
        line_of=line_of,
        check_imports=check_imports,
        unknowns=dataclasses.replace(_unknowns_of(doc), subgraphs=unresolved),
    )
    if issues:
        raise GraphError(issues)
    return graph


def _resolve_human_models(
    data: dict[str, Any], doc: Any, *, file: str, resolve_files: bool
) -> list[GraphIssue]:
    """Pin the JSON Schema of each human task's ``model`` as its ``response``.

    The workflow checks answers against the pinned schema and never imports the model.
    """
    issues: list[GraphIssue] = []
    if not isinstance(data.get("nodes"), list):
        return issues
    nodes = data["nodes"] = list(data["nodes"])
    for i, node in enumerate(nodes):
        human = node.get("human") if isinstance(node, Mapping) else None
        if not isinstance(human, Mapping) or not isinstance(human.get("model"), str):
            continue
        key = doc.nearest(("nodes", i, "human", "model"))
        line = key.start_mark.line + 1 if key is not None else None
        problem = ""
        if "response" in human:
            problem = "give 'response' or 'model', not both"
        elif not resolve_files:
            problem = "a generated graph cannot import a response model; give 'response'"
        else:
            schema, problem = model_schema(human["model"])
            if schema is not None:
                nodes[i] = {**node, "human": {**human, "response": schema}}
        if problem:
            issues.append(GraphIssue(rule="human", message=problem, file=file, line=line))
    return issues


def _yaml_issue(problem: Problem, file: str) -> GraphIssue:
    return GraphIssue(
        rule=_RULES[problem.kind],
        message=problem.message,
        file=file,
        line=problem.line,
        column=problem.column,
    )


def _resolve_guardrails(
    value: object, *, file: str, line: int | None
) -> tuple[Policy | None, list[GraphIssue]]:
    """Load the policy file a graph's ``guardrails`` value names; problems become GraphIssues.

    ``file`` is the graph's source: a relative policy path is resolved from its directory,
    or from the current directory when it is a placeholder such as ``<string>``.
    """

    def issue(message: str) -> GraphIssue:
        return GraphIssue(rule="guardrails", message=f"guardrails: {message}", file=file, line=line)

    if not isinstance(value, str) or not value.strip():
        found = "an empty string" if isinstance(value, str) else _found(value)
        return None, [
            issue(
                "expected the path of a policy file (relative to the graph file), found "
                f"{found}; to define rules, put them in a policy file and give its path"
            )
        ]
    placeholder = file.startswith("<")
    path = (Path() if placeholder else Path(file).parent) / value
    try:
        exists = path.exists()
    except (OSError, ValueError) as exc:  # a name too long for the OS, a NUL byte
        reason = getattr(exc, "strerror", None) or str(exc)
        return None, [issue(f"{_shown(str(path))} cannot be a policy file: {reason}")]
    if not exists:
        origin = "the current directory" if placeholder else "the graph file's directory"
        return None, [
            issue(
                f"policy file {_shown(str(path))} does not exist (relative paths start from "
                f"{origin})"
            )
        ]
    try:
        return load_policy(path), []
    except PolicyError as exc:
        # One issue per policy problem, each naming its own file:line:column.
        return None, [
            issue(f"in policy {problem.place}: {problem.message}") for problem in exc.issues
        ]


# -- sub-graphs ----------------------------------------------------------------------------

_MAX_SEARCHED: Final = 500  # YAML files read to find a graph by name@version


def _resolve_subgraphs(
    data: Mapping[str, Any],
    doc: Composed,
    *,
    file: str,
    check_imports: bool,
    trail: _Trail,
    resolve_files: bool,
) -> tuple[dict[str, AgentGraph], list[GraphIssue], set[str]]:
    """Load the graphs that the tasks' ``graph`` references name, once per reference.

    Returns the graphs by reference, the problems, and the references that failed.
    """
    nodes = data.get("nodes")
    found: dict[str, AgentGraph] = {}
    issues: list[GraphIssue] = []
    failed: set[str] = set()
    for i, node in enumerate(nodes if isinstance(nodes, list) else []):
        ref = node.get("graph") if isinstance(node, Mapping) else None
        if not isinstance(ref, str) or ref == GENERATED or ref in found or ref in failed:
            continue
        key = doc.keys.get(("nodes", i, "graph"))
        line = key.start_mark.line + 1 if key is not None else None
        name = node.get("name")
        where = f"node '{_shown(name)}'" if isinstance(name, str) else f"node #{i + 1}"

        def issue(
            rule: str, message: str, line: int | None = line, where: str = where, to: Any = issues
        ) -> None:
            to.append(GraphIssue(rule=rule, message=message, file=file, line=line, where=where))

        if not resolve_files:
            issue("subgraph-ref", f"a generated graph cannot name sub-graph files ({ref!r})")
            failed.add(ref)
            continue
        path, problem = _subgraph_path(ref, file)
        if path is None:
            issue("subgraph-missing", problem)
            failed.add(ref)
            continue
        resolved = path.resolve()
        chain = [*trail.files, *([] if file.startswith("<") else [Path(file).resolve()])]
        if resolved in chain:
            shown = " -> ".join(_shown(str(p.name)) for p in [*chain[chain.index(resolved) :]])
            issue(
                "subgraph-cycle",
                f"sub-graph '{_shown(ref)}' leads back to a graph that runs it "
                f"({shown} -> {_shown(resolved.name)}); a graph cannot run itself",
            )
            failed.add(ref)
            continue
        if len(chain) >= MAX_SUBGRAPH_DEPTH or trail.loaded[0] >= MAX_SUBGRAPHS:
            issue(
                "too-large" if trail.loaded[0] >= MAX_SUBGRAPHS else "subgraph-depth",
                f"sub-graph '{_shown(ref)}' would be past the limit of {MAX_SUBGRAPH_DEPTH} "
                f"levels and {MAX_SUBGRAPHS} sub-graphs in all",
            )
            failed.add(ref)
            continue
        trail.loaded[0] += 1
        try:
            found[ref] = _load(
                path,
                check_imports=check_imports,
                trail=_Trail(files=tuple(chain), loaded=trail.loaded),
            )
        except GraphError as exc:
            issues += exc.issues  # each names the sub-graph's own file and line
            count = len(exc.issues)
            issue(
                "subgraph-invalid",
                f"sub-graph '{_shown(ref)}' is invalid ({count} problem"
                f"{'s' if count != 1 else ''}, listed with its file)",
            )
            failed.add(ref)
    return found, issues, failed


def _subgraph_path(ref: str, file: str) -> tuple[Path | None, str]:
    """The file a reference names, or None and why not."""
    base = Path() if file.startswith("<") else Path(file).parent
    origin = "the current directory" if file.startswith("<") else "the graph file's directory"
    if ref.endswith((".yaml", ".yml")):
        path = base / ref
        try:
            if path.is_file():
                return path, ""
        except (OSError, ValueError) as exc:
            return None, f"sub-graph '{_shown(ref)}' cannot be a file: {exc}"
        return None, (
            f"sub-graph file {_shown(str(path))} does not exist (relative paths start from "
            f"{origin})"
        )
    name, at, version = ref.rpartition("@")
    if not at or not name or not version:
        return None, (
            f"graph '{_shown(ref)}' is neither a YAML path ('other.yaml'), 'name@version' "
            f"nor '{GENERATED}'"
        )
    matches = []
    try:
        candidates = sorted([*base.glob("*.yaml"), *base.glob("*.yml")])[:_MAX_SEARCHED]
    except OSError as exc:
        return None, f"cannot list {_shown(str(base))}: {exc}"
    for candidate in candidates:
        if not file.startswith("<") and candidate.resolve() == Path(file).resolve():
            continue
        try:
            head = compose(read_text(candidate, limits=GRAPH_LIMITS), limits=GRAPH_LIMITS).data
        except (Unreadable, OSError):
            continue
        if (
            isinstance(head, Mapping)
            and head.get("name") == name
            and str(head.get("version")) == version
        ):
            matches.append(candidate)
    if len(matches) == 1:
        return matches[0], ""
    if matches:
        listed = ", ".join(_shown(m.name) for m in matches)
        return None, f"graph {_shown(ref)} is defined by several files in {origin}: {listed}"
    return None, (
        f"no graph named '{_shown(name)}' with version {_shown(version)} among the YAML files "
        f"of {origin} ({_shown(str(base))})"
    )


def _shown(text: str) -> str:
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if len(text) <= 120 else f"{text[:80]}...{text[-30:]}"


def _found(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {_shown(repr(value))}"


# -- schema errors -------------------------------------------------------------------------


def _rule_for(loc: Loc) -> str:
    names = [str(part) for part in loc]
    if "retry" in names:
        return "bad-retry"
    if "human" in names:
        return "human"
    if "llm" in names:
        return "llm"
    if any(name.endswith("timeout_s") for name in names):
        return "bad-timeout"
    if "max_iterations" in names:
        return "bad-iterations"
    return "schema"


def _schema_issues(
    exc: ValidationError, data: Mapping[str, Any], doc: Composed, file: str
) -> list[GraphIssue]:
    """One issue per schema error, at the line and column of the value (or key) concerned."""
    issues = []
    for error in exc.errors():
        loc: Loc = tuple(error["loc"])
        if loc in doc.broken or error["type"] == "missing" and loc[:-1] in doc.broken:
            continue  # the YAML problem that left the value unread is reported
        if error["type"] == "extra_forbidden":
            node = doc.keys.get(loc) or doc.nearest(loc)
            message = unknown_key(loc[-1], _fields_at(loc[:-1]))
        elif error["type"] == "missing":
            node = doc.nearest(loc[:-1])
            message = f"missing required key {loc[-1]!r}"
        elif (
            error["type"] in _OUT_OF_RANGE
            and str(loc[-1]) in BOUNDS
            and not {"human", "llm"} & set(map(str, loc))
        ):
            node = doc.nearest(loc)
            shown = str(error["input"])
            message = f"is {shown}; allowed: {BOUNDS[str(loc[-1])].text}"
        else:
            node = doc.nearest(loc)
            expected = error["msg"].replace("Input should be", "expected")
            message = f"{expected.replace('Value error, ', '')}, found {_found(error['input'])}"
            plain = not {"human", "llm"} & set(map(str, loc))
            bound = BOUNDS.get(str(loc[-1])) if plain else None
            message += f"; allowed: {bound.text}" if bound else ""
        line, column = node_position(node) if node is not None else (None, None)
        field = ".".join(str(part) for part in loc) or "graph"
        issues.append(
            GraphIssue(
                rule=_rule_for(loc),
                message=f"{field}{' ' if message.startswith('is ') else ': '}{message}",
                file=file,
                line=line,
                column=column,
                where=_where(data, loc),
            )
        )
    return issues


def _pydantic_issues(
    exc: ValidationError, data: Mapping[str, Any], file: str, line_of: Any
) -> list[GraphIssue]:
    """Issues for the schema errors of a graph given as data (the builder's): no columns."""
    issues = _schema_issues(exc, data, Composed(), file)
    return [
        dataclasses.replace(issue, line=line_of(tuple(error["loc"])), column=None)
        for issue, error in zip(issues, exc.errors(), strict=True)
    ]


def _where(data: Mapping[str, Any], loc: Loc) -> str | None:
    if len(loc) < 2 or loc[0] not in ("nodes", "edges") or not isinstance(loc[1], int):
        return None
    section, index = loc[0], loc[1]
    items = data.get(section)
    item = items[index] if isinstance(items, list) and index < len(items) else None
    if not isinstance(item, Mapping):
        return f"{section[:-1]} #{index + 1}"
    if section == "nodes":
        name = item.get("name")
        return f"node '{_shown(name)}'" if isinstance(name, str) else f"node #{index + 1}"
    source, target = item.get("from", "?"), item.get("to") or "END"
    return f"edge {_shown(str(source))} -> {_shown(str(target))}"


def _fields_at(loc: Loc) -> list[str]:
    """The keys allowed in the mapping at ``loc``, as YAML spells them."""
    model: type[BaseModel] | None = AgentGraph
    keyed = False  # the next part is a key of a mapping of models (``state: {name: ...}``)
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        info = model.model_fields.get(str(part)) or next(
            (info for info in model.model_fields.values() if info.alias == part), None
        )
        model = _model_in(info.annotation) if info is not None else None
        keyed = info is not None and _is_mapping(info.annotation)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _is_mapping(annotation: Any) -> bool:
    """Whether an annotation such as ``dict[str, X] | None`` is a mapping."""
    if typing.get_origin(annotation) is dict:
        return True
    return any(_is_mapping(arg) for arg in typing.get_args(annotation) if arg is not type(None))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``list[NodeSpec]`` or ``X | None``."""
    stack = [annotation]
    while stack:
        candidate = stack.pop()
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
        stack.extend(typing.get_args(candidate))
    return None


# -- the best-effort graph -----------------------------------------------------------------


def _unknowns_of(doc: Composed) -> Unknowns:
    unknowns = Unknowns()
    for loc in doc.broken:
        _note(unknowns, loc)
    return unknowns


def _best_effort(
    data: Mapping[str, Any], exc: ValidationError, doc: Composed
) -> tuple[AgentGraph | None, Unknowns]:
    """A graph like ``data`` without the values that failed validation, and what they were.

    Returns None when what failed is the shape of the whole (nodes or edges not lists, one
    of them missing): graph-wide rules cannot run on a guess that large.
    """
    attempt = copy.deepcopy(dict(data))
    unknowns = _unknowns_of(doc)
    errors = [tuple(error["loc"]) for error in exc.errors()] + sorted(doc.broken, key=str)
    for _ in range(_MAX_REPAIRS):
        for loc in errors:
            if not _repair(attempt, loc):
                return None, unknowns
            _note(unknowns, loc)
        try:
            return AgentGraph.model_validate(attempt), unknowns
        except ValidationError as again:
            errors = [tuple(error["loc"]) for error in again.errors()]
    return None, unknowns


# Stand-ins for required values that failed validation; None: a name no real one can equal.
_STAND_INS: Final[dict[str, dict[str, str | None]]] = {
    "nodes": {"name": None, "kind": "task", "impl": ""},
    "edges": {"from": None},
    "": {"name": "graph", "version": "0.0.0"},
}


def _repair(data: dict[str, Any], loc: Loc) -> bool:
    """Drop the value at ``loc`` or put a stand-in there; False if that cannot be done."""
    if not loc or loc[0] in ("nodes", "edges") and (len(loc) < 2 or not isinstance(loc[1], int)):
        return False
    try:
        if loc[0] in ("nodes", "edges"):
            section, index = str(loc[0]), int(loc[1])
            items = data[section]
            if not isinstance(items[index], dict):
                items[index] = {}
            item = items[index]
            stand_ins = _STAND_INS[section]
            # A node or edge whose own value is broken, or that lost keys to a merge key:
            # give it every required key it lacks.
            fields = [loc[2]] if len(loc) > 2 else [key for key in stand_ins if key not in item]
            for key in fields:
                if key in stand_ins:
                    item[key] = stand_ins[key] or f"\x00{section} {index}"
                else:
                    _drop(item, loc[2:])
            return True
        if loc[0] in ("name", "version"):
            data[str(loc[0])] = _STAND_INS[""][str(loc[0])]
            return True
        _drop(data, loc)
        return True
    except (KeyError, IndexError, TypeError):
        return False


def _drop(data: dict[Any, Any], loc: Loc) -> None:
    """Remove the value at ``loc`` (or the first thing on the way that is not a mapping)."""
    parent = data
    for part in loc[:-1]:
        child = parent.get(part)
        if not isinstance(child, dict):
            parent.pop(part, None)
            return
        parent = child
    parent.pop(loc[-1], None)


def _note(unknowns: Unknowns, loc: Loc) -> None:
    """Record in ``unknowns`` what replacing the value at ``loc`` leaves unknown."""
    if loc[:1] == ("nodes",) and len(loc) >= 2 and isinstance(loc[1], int):
        i, key = loc[1], loc[2] if len(loc) > 2 else None
        if key in (None, "name"):
            unknowns.names.add(i)
        if key in (None, "name", "kind"):
            unknowns.kinds.add(i)
        if key in (None, "impl"):
            unknowns.impls.add(i)
        if key is None or key in _TIMING or _misspelt(key, NodeSpec, _TIMING):
            unknowns.timing.add(i)
    elif loc[:1] == ("edges",) and len(loc) >= 2 and isinstance(loc[1], int):
        key = loc[2] if len(loc) > 2 else None
        unknowns.edges.add(loc[1])
        unknowns.sources |= key in (None, "from")
        unknowns.targets |= key in (None, "to") or _misspelt(key, None, {"to", "from"})
    elif loc[:1] == ("defaults",):
        key = loc[1] if len(loc) > 1 else None
        timing = key is None or key in _TIMING or _misspelt(key, GraphDefaults, _TIMING)
        unknowns.default_timing |= timing
    elif loc[:1] == ("start",):
        unknowns.start = True


def _misspelt(key: object, model: type[BaseModel] | None, fields: typing.Collection[str]) -> bool:
    """Whether ``key``, unknown to ``model``, is probably a misspelling of one of ``fields``."""
    if not isinstance(key, str) or (model is not None and key in model.model_fields):
        return False
    return bool(difflib.get_close_matches(key, sorted(fields), n=1, cutoff=0.6))
