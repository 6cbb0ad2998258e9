"""A graph references its guardrail policy file, and the loaded policy is pinned into the graph.

Fixtures live in tests/fixtures/graphs/guardrails (graphs) and its policies/ folder. As in
test_validation, every line of an invalid graph where a problem must be reported ends in a
marker comment ``# <- rule``. No Temporal server.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from temporalio.contrib.pydantic import pydantic_data_converter

from graphrunner.errors import GraphError, GraphIssue
from graphrunner.graph import AgentGraph, GraphBuilder, graph_json_schema, load_graph, parse_graph
from graphrunner.guardrails import Action, Policy, Rule, Scope, load_policy
from tests.nodes import Echo, LoopThenFinish
from tests.test_cli_definitions import conforms

ROOT = Path(__file__).resolve().parent.parent
GUARDED = ROOT / "tests" / "fixtures" / "graphs" / "guardrails"
POLICIES = GUARDED / "policies"
VALID = GUARDED / "valid-guardrails.yaml"
MARKER = re.compile(r"#\s*<-\s*([a-z-]+(?:\s*,\s*[a-z-]+)*)\s*$")
INVALID = sorted(p.name for p in GUARDED.glob("invalid-*.yaml"))

# A fixed graph without guardrails, and its content_hash from before AgentGraph had the
# field: lifetimes already running pinned this hash, so it must never change.
PINNED_GRAPH = {
    "name": "pinned",
    "version": "1.0.0",
    "defaults": {"timeout_s": 30, "retry": {"max_attempts": 2}},
    "nodes": [
        {"name": "work", "kind": "task", "impl": "tests.nodes:Echo"},
        {
            "name": "decide",
            "kind": "plan",
            "impl": "tests.nodes:LoopThenFinish",
            "local": True,
            "config": {"rounds": 2},
        },
    ],
    "edges": [
        {"from": "work", "to": "decide"},
        {"from": "decide", "to": "work"},
        {"from": "decide", "type": "FINAL"},
    ],
}
PINNED_HASH = "6ff5adcf53f84c3c5d7768422644f50e8374ee29f9ef09d3608e728b68f78600"

LOOP_YAML = """\
name: loop
version: 1.0.0
guardrails: {guardrails}
nodes:
  - {{name: work, kind: task, impl: tests.nodes:Echo}}
  - {{name: decide, kind: plan, impl: tests.nodes:LoopThenFinish}}
edges:
  - {{from: work, to: decide}}
  - {{from: decide, to: work}}
  - {{from: decide, type: FINAL}}
"""


def cap(limit: int) -> Policy:
    return Policy(
        rules=[
            Rule(
                name="token-cap",
                when=f"sum(tokens_used) > {limit}",
                scope=Scope.LIFETIME,
                action=Action.ABORT_LIFETIME,
            )
        ]
    )


def loop_builder() -> GraphBuilder:
    return (
        GraphBuilder("loop", version="1.0.0")
        .task("work", Echo)
        .plan("decide", LoopThenFinish)
        .edge("work", "decide")
        .edge("decide", "work")
        .final("decide")
    )


def marked_issues(path: Path) -> list[tuple[str, int]]:
    """``(rule, line)`` of every marker; a rule marked twice on a line is expected twice."""
    found: list[tuple[str, int]] = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = MARKER.search(text)
        if match:
            found += [(rule.strip(), number) for rule in match.group(1).split(",")]
    return found


def issues_of(path: Path) -> list[GraphIssue]:
    with pytest.raises(GraphError) as info:
        load_graph(path)
    return info.value.issues


def guardrail_messages(issues: list[GraphIssue]) -> list[str]:
    return [issue.message for issue in issues if issue.rule == "guardrails"]


# --- loading ---------------------------------------------------------------------------------


def test_a_referenced_policy_is_loaded_relative_to_the_graph_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the path in the graph is not resolved from here

    graph = load_graph(VALID)

    assert graph.guardrails is not None
    assert graph.guardrails == load_policy(POLICIES / "valid-caps.yaml")
    assert [rule.name for rule in graph.guardrails.rules] == ["lifetime-token-cap", "slow-work"]
    assert str(graph.guardrails.rule("slow-work").when) == 'node == "work" and latency_ms > 30_000'


def test_a_graph_from_text_resolves_its_policy_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(POLICIES / "valid-caps.yaml", tmp_path / "caps.yaml")
    text = LOOP_YAML.format(guardrails="caps.yaml")

    monkeypatch.chdir(tmp_path)
    graph = parse_graph(text, check_imports=False)
    assert graph.guardrails == load_policy(tmp_path / "caps.yaml")

    monkeypatch.chdir(ROOT)
    with pytest.raises(GraphError) as info:
        parse_graph(text, check_imports=False)
    assert guardrail_messages(info.value.issues) == [
        "guardrails: policy file caps.yaml does not exist (relative paths start from the "
        "current directory)"
    ]


@pytest.mark.parametrize("fixture", INVALID)
def test_exactly_the_marked_problems_are_reported(fixture: str) -> None:
    path = GUARDED / fixture
    issues = issues_of(path)

    assert sorted((i.rule, i.line) for i in issues) == sorted(marked_issues(path))
    assert {i.file for i in issues} == {str(path)}


def test_policy_errors_name_the_policy_file_line_and_column() -> None:
    path = GUARDED / "invalid-policy-errors.yaml"
    policy = POLICIES / "invalid-two-problems.yaml"
    issues = issues_of(path)

    messages = guardrail_messages(issues)
    assert len(messages) == 2
    assert messages[0].startswith(f"guardrails: in policy {policy}:4:15: rule 'token-cap': ")
    assert "unknown field 'tokens_usd'" in messages[0]
    assert messages[1].startswith(f"guardrails: in policy {policy}:9:12: rule 'slow': scope: ")
    assert "'galaxy'" in messages[1]
    # the graph's own problems come in the same GraphError
    assert [i.rule for i in issues if i.rule != "guardrails"] == ["dangling-edge"]
    assert f"{path}:4: guardrails: in policy {policy}:4:15" in str(GraphError(issues))


def test_a_missing_policy_file_is_named_as_resolved() -> None:
    messages = guardrail_messages(issues_of(GUARDED / "invalid-missing-policy.yaml"))

    assert messages == [
        f"guardrails: policy file {POLICIES / 'no-such-policy.yaml'} does not exist "
        "(relative paths start from the graph file's directory)"
    ]


def test_an_unreadable_policy_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").mkdir()  # exists, but cannot be read as a file
    graph = tmp_path / "graph.yaml"
    graph.write_text(LOOP_YAML.format(guardrails="policy.yaml"), encoding="utf-8")

    with pytest.raises(GraphError) as info:
        load_graph(graph, check_imports=False)

    [message] = guardrail_messages(info.value.issues)
    assert message.startswith(f"guardrails: in policy {tmp_path / 'policy.yaml'}: ")
    assert "cannot read the policy file" in message
    assert info.value.issues[0].line == 3


def test_inline_rules_are_rejected() -> None:
    [message] = guardrail_messages(issues_of(GUARDED / "invalid-inline-policy.yaml"))

    assert "expected the path of a policy file" in message
    assert "found a mapping" in message


@pytest.mark.parametrize(
    ("value", "found"),
    [("", "nothing"), ("''", "an empty string"), ("[a.yaml]", "a list"), ("5", "int 5")],
)
def test_a_guardrails_value_that_is_not_a_path_is_rejected(value: str, found: str) -> None:
    with pytest.raises(GraphError) as info:
        parse_graph(LOOP_YAML.format(guardrails=value), check_imports=False)

    [issue] = info.value.issues
    assert (issue.rule, issue.line) == ("guardrails", 3)
    assert f"expected the path of a policy file (relative to the graph file), found {found};" in (
        issue.message
    )


def test_a_rule_naming_an_unknown_node_is_reported() -> None:
    [message] = guardrail_messages(issues_of(GUARDED / "invalid-unknown-node.yaml"))

    # "decide" (compared with !=) is a node; only the misspelt "wrok" is reported
    assert message == (
        "guardrails: rule 'work-cost' compares node to 'wrok', which is not a node of this "
        "graph; expected one of: decide, work"
    )


# --- hash and serialisation ------------------------------------------------------------------


def test_the_hash_of_a_graph_without_guardrails_is_unchanged() -> None:
    graph = AgentGraph.model_validate(PINNED_GRAPH)

    assert graph.guardrails is None
    assert graph.content_hash() == PINNED_HASH
    # the wire form is also as before, so workers that predate the field accept it
    assert "guardrails" not in json.loads(graph.model_dump_json(by_alias=True))


def test_the_hash_covers_the_pinned_policy() -> None:
    bare = AgentGraph.model_validate(PINNED_GRAPH)
    guarded = AgentGraph.model_validate({**PINNED_GRAPH, "guardrails": cap(1000)})
    same = AgentGraph.model_validate({**PINNED_GRAPH, "guardrails": cap(1000)})
    changed = AgentGraph.model_validate({**PINNED_GRAPH, "guardrails": cap(2000)})

    assert guarded.content_hash() == same.content_hash()
    assert len({bare.content_hash(), guarded.content_hash(), changed.content_hash()}) == 3


def test_a_pinned_graph_round_trips_through_json() -> None:
    graph = load_graph(VALID)

    back = AgentGraph.model_validate_json(graph.model_dump_json(by_alias=True))

    assert back == graph
    assert back.guardrails is not None
    assert back.guardrails.rule("lifetime-token-cap").when == cap(10000).rules[0].when
    assert back.content_hash() == graph.content_hash()


def test_a_pinned_graph_round_trips_through_the_temporal_pydantic_converter() -> None:
    graph = load_graph(VALID)
    converter = pydantic_data_converter.payload_converter

    [back] = converter.from_payloads(converter.to_payloads([graph]), [AgentGraph])

    assert isinstance(back, AgentGraph)
    assert back == graph
    assert back.content_hash() == graph.content_hash()


# --- builder and schema ----------------------------------------------------------------------


def test_the_builder_pins_a_policy_object() -> None:
    graph = loop_builder().guardrails(cap(500)).build()

    assert graph.guardrails == cap(500)
    assert loop_builder().build().guardrails is None


@pytest.mark.parametrize("as_type", [str, Path])
def test_the_builder_loads_a_policy_file(as_type: type[str] | type[Path]) -> None:
    graph = loop_builder().guardrails(as_type(POLICIES / "valid-caps.yaml")).build()

    assert graph.guardrails == load_policy(POLICIES / "valid-caps.yaml")
    assert graph.content_hash() != loop_builder().build().content_hash()


def test_the_builder_reports_policy_errors_with_the_graph_problems() -> None:
    policy = POLICIES / "invalid-two-problems.yaml"
    builder = loop_builder().edge("decide", "ghost").guardrails(policy)

    with pytest.raises(GraphError) as info:
        builder.build()

    messages = guardrail_messages(info.value.issues)
    assert [m.split(": rule")[0] for m in messages] == [
        f"guardrails: in policy {policy}:4:15",
        f"guardrails: in policy {policy}:9:12",
    ]
    assert "dangling-edge" in {i.rule for i in info.value.issues}


def test_the_builder_reports_a_rule_naming_an_unknown_node() -> None:
    with pytest.raises(GraphError) as info:
        loop_builder().guardrails(POLICIES / "node-typo.yaml").build()

    assert [(i.rule, i.file) for i in info.value.issues] == [("guardrails", "<builder>")]
    assert "'wrok'" in info.value.issues[0].message


def test_the_schema_documents_guardrails_as_a_policy_path() -> None:
    schema = graph_json_schema()

    assert schema["properties"]["guardrails"]["type"] == "string"
    assert "policy file" in schema["properties"]["guardrails"]["description"]
    assert not {"Policy", "Rule"} & set(schema["$defs"])  # the loaded form is not the YAML's
    assert conforms(yaml.safe_load(VALID.read_text(encoding="utf-8")), schema, schema)
    inline = yaml.safe_load((GUARDED / "invalid-inline-policy.yaml").read_text(encoding="utf-8"))
    assert not conforms(inline, schema, schema)
