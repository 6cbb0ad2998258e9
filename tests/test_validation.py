"""Graph definitions: every rule names its file, line and node/edge; all problems at once.

Fixtures live in tests/fixtures/graphs. In the invalid ones, every line where a problem must be
reported ends in a marker comment ``# <- rule`` (or ``# <- rule, rule``). No Temporal server.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from examples.research import Gather, Merge, Publish, Review, Reviewer
from graphrunner.errors import GraphError, GraphIssue
from graphrunner.graph import (
    AgentGraph,
    GraphBuilder,
    GraphDefaults,
    NodeKind,
    RetrySpec,
    load_graph,
    parse_graph,
)
from tests.nodes import Collect, Echo, FanOutAll

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = ROOT / "tests" / "fixtures" / "graphs"
RESEARCH = ROOT / "examples" / "research.yaml"
MARKER = re.compile(r"#\s*<-\s*([a-z-]+(?:\s*,\s*[a-z-]+)*)\s*$")

RULES = {
    "yaml-syntax",
    "duplicate-key",
    "schema",
    "bad-retry",
    "bad-timeout",
    "bad-iterations",
    "invalid-version",
    "invalid-name",
    "no-nodes",
    "duplicate-name",
    "local-task",
    "impl-import",
    "impl-kind",
    "unknown-start",
    "dangling-edge",
    "final-target",
    "missing-target",
    "duplicate-edge",
    "alternation",
    "edge-direction",
    "task-successor",
    "plan-successor",
    "unreachable",
    "no-final-path",
    "parallel-without-join",
    "join-without-parallel",
}

# fixture, rule, line, where (node or edge), words the message must contain
CASES = [
    ("invalid-yaml-syntax.yaml", "yaml-syntax", 4, None, "mapping values are not allowed"),
    ("invalid-duplicate-key.yaml", "duplicate-key", 8, None, "key 'kind' appears twice"),
    ("invalid-schema.yaml", "schema", 8, "node 'work'", "colour"),
    ("invalid-bad-retry.yaml", "bad-retry", 5, "node 'work'", "max_interval_s (2.0) is below"),
    ("invalid-bad-retry-range.yaml", "bad-retry", 9, "node 'work'", "max_attempts"),
    ("invalid-bad-timeout.yaml", "bad-timeout", 8, "node 'work'", "must be shorter than"),
    ("invalid-bad-timeout-range.yaml", "bad-timeout", 8, "node 'work'", "timeout_s"),
    ("invalid-bad-iterations.yaml", "bad-iterations", 5, None, "max_iterations"),
    ("invalid-version.yaml", "invalid-version", 3, None, "'1.0' is not semver"),
    ("invalid-name.yaml", "invalid-name", 5, "node 'fetch data'", "must start with a letter"),
    ("invalid-no-nodes.yaml", "no-nodes", 4, None, "at least one node"),
    ("invalid-duplicate-name.yaml", "duplicate-name", 7, "node 'work'", "first defined on line 5"),
    ("invalid-local-task.yaml", "local-task", 5, "node 'work'", "remove 'local: true'"),
    ("invalid-impl-import.yaml", "impl-import", 5, "node 'work'", "tests.nodes:DoesNotExist"),
    ("invalid-impl-kind.yaml", "impl-kind", 5, "node 'work'", "must subclass graphrunner.Task"),
    ("invalid-unknown-start.yaml", "unknown-start", 4, None, "'begin' is not defined"),
    (
        "invalid-dangling-edge.yaml",
        "dangling-edge",
        10,
        "edge decide -> ghost (NORMAL)",
        "'ghost' is not a node",
    ),
    (
        "invalid-final-target.yaml",
        "final-target",
        10,
        "edge decide -> work (FINAL)",
        "remove its 'to'",
    ),
    (
        "invalid-missing-target.yaml",
        "missing-target",
        10,
        "edge decide -> END (NORMAL)",
        "needs a 'to' node",
    ),
    (
        "invalid-duplicate-edge.yaml",
        "duplicate-edge",
        9,
        "edge work -> decide (NORMAL)",
        "declared twice",
    ),
    (
        "invalid-alternation.yaml",
        "alternation",
        14,
        "edge decide -> wrap_up (NORMAL)",
        "put a task between them",
    ),
    (
        "invalid-edge-direction.yaml",
        "edge-direction",
        10,
        "edge decide -> work (JOIN)",
        "JOIN edges go from a task to a plan",
    ),
    ("invalid-task-successor.yaml", "task-successor", 6, "node 'work'", "it has 2"),
    ("invalid-plan-successor.yaml", "plan-successor", 7, "node 'decide'", "outgoing edge"),
    ("invalid-unreachable.yaml", "unreachable", 7, "node 'orphan'", "start node 'work'"),
    ("invalid-no-final-path.yaml", "no-final-path", 5, "node 'work'", "can never finish"),
    ("invalid-no-final-path.yaml", "no-final-path", 6, "node 'decide'", "can never finish"),
    (
        "invalid-parallel-without-join.yaml",
        "parallel-without-join",
        12,
        "edge split -> b (PARALLEL)",
        "never reaches a JOIN",
    ),
    (
        "invalid-join-without-parallel.yaml",
        "join-without-parallel",
        8,
        "edge work -> decide (JOIN)",
        "nothing to join",
    ),
]

INVALID = sorted(p.name for p in GRAPHS.glob("invalid-*.yaml")) + ["many-problems.yaml"]


def marked_issues(path: Path) -> set[tuple[str, int]]:
    """``(rule, line)`` of every ``# <- rule`` marker comment in a fixture."""
    found: set[tuple[str, int]] = set()
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = MARKER.search(text)
        if match:
            found |= {(rule.strip(), number) for rule in match.group(1).split(",")}
    return found


def load_issues(path: Path) -> list[GraphIssue]:
    with pytest.raises(GraphError) as info:
        load_graph(path)
    return info.value.issues


def test_every_rule_has_an_invalid_fixture() -> None:
    assert {rule for _, rule, *_ in CASES} == RULES
    assert {case[0] for case in CASES} == set(INVALID) - {"many-problems.yaml"}


@pytest.mark.parametrize(
    ("fixture", "rule", "line", "where", "says"),
    CASES,
    ids=[f"{case[1]}@{case[0]}:{case[2]}" for case in CASES],
)
def test_rule_reports_file_line_and_subject(
    fixture: str, rule: str, line: int, where: str | None, says: str
) -> None:
    path = GRAPHS / fixture
    issues = load_issues(path)

    matching = [i for i in issues if i.rule == rule and i.line == line and i.where == where]
    assert matching, f"no {rule} issue at line {line} for {where}; got: {issues}"
    assert matching[0].file == str(path)
    assert says in matching[0].message


@pytest.mark.parametrize("fixture", INVALID)
def test_exactly_the_marked_problems_are_reported(fixture: str) -> None:
    path = GRAPHS / fixture
    issues = load_issues(path)

    assert sorted((i.rule, i.line) for i in issues) == sorted(marked_issues(path))
    assert {i.file for i in issues} == {str(path)}


@pytest.mark.parametrize(
    ("fixture", "name", "start", "start_kind"),
    [
        ("valid-loop.yaml", "loop", "work", NodeKind.TASK),
        ("valid-fan-out.yaml", "fan_out", "prepare", NodeKind.TASK),
        ("valid-plan-start.yaml", "plan_start", "route", NodeKind.PLAN),
        ("valid-nested-fan-out.yaml", "nested_fan_out", "split", NodeKind.PLAN),
        ("../../../examples/research.yaml", "research", "gather", NodeKind.TASK),
    ],
)
def test_valid_graph_loads(fixture: str, name: str, start: str, start_kind: NodeKind) -> None:
    graph = load_graph(GRAPHS / fixture)

    assert isinstance(graph, AgentGraph)
    assert graph.name == name
    assert graph.start_node == start
    assert graph.node(start).kind is start_kind


def test_valid_fixture_settings_reach_the_model() -> None:
    graph = load_graph(GRAPHS / "valid-loop.yaml")
    work, decide = graph.node("work"), graph.node("decide")

    assert graph.timeout(work).total_seconds() == 30
    assert graph.heartbeat_timeout(work) is not None
    assert graph.retry(work).max_attempts == 2
    assert graph.retry(work).max_interval_s == 4
    assert decide.local is True
    assert decide.config == {"rounds": 3, "loop_to": "work"}


def test_partial_default_retry_keeps_built_in_values() -> None:
    text = """\
name: partial_retry
version: 1.0.0
defaults:
  retry: {initial_interval_s: 0.5}
nodes:
  - {name: work, kind: task, impl: tests.nodes:Echo}
edges:
  - {from: work, type: FINAL}
"""
    graph = parse_graph(text)
    retry = graph.retry(graph.node("work"))

    assert retry.initial_interval_s == 0.5
    assert retry.max_attempts == 3  # the built-in default, not unlimited
    assert retry.backoff == 2.0 and retry.max_interval_s == 30.0


def test_many_problems_are_all_reported_in_one_error() -> None:
    path = GRAPHS / "many-problems.yaml"
    with pytest.raises(GraphError) as info:
        load_graph(path)
    issues = info.value.issues

    marked = marked_issues(path)
    assert len(issues) == len(marked) == 15
    assert {(i.rule, i.line) for i in issues} == marked
    assert len({i.rule for i in issues}) == 15
    message = str(info.value)
    assert message.startswith("15 problems in graph definition:\n")
    for issue in issues:
        assert f"  {issue}" in message.splitlines()


def test_schema_problems_are_all_reported_in_one_error() -> None:
    text = """\
name: shapes
version: 1.0.0
defaults: {max_iterations: 0}
nodes:
  - {name: work, kind: task, impl: tests.nodes:Echo, timeout_s: -1}
  - {name: decide, kind: choose, impl: tests.nodes:Collect}
edges:
  - {from: work, to: decide, type: SIDEWAYS}
"""
    with pytest.raises(GraphError) as info:
        parse_graph(text, file="shapes.yaml")

    found = {(i.rule, i.line, i.where) for i in info.value.issues}
    assert found == {
        ("bad-iterations", 3, None),
        ("bad-timeout", 5, "node 'work'"),
        ("schema", 6, "node 'decide'"),
        ("schema", 8, "edge work -> decide"),
    }


def test_check_imports_false_skips_implementation_rules() -> None:
    graph = load_graph(GRAPHS / "invalid-impl-import.yaml", check_imports=False)

    assert graph.node("work").impl == "tests.nodes:DoesNotExist"


def test_missing_file_is_a_graph_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    issues = load_issues(path)

    assert [(i.rule, i.file) for i in issues] == [("unreadable", str(path))]


def test_task_whose_only_edge_is_broken_is_not_told_it_has_none() -> None:
    text = """\
name: broken_edge
version: 1.0.0
nodes:
  - {name: work, kind: task, impl: tests.nodes:Echo}
  - {name: decide, kind: plan, impl: tests.nodes:Collect}
edges:
  - {from: work, to: ghost}
  - {from: decide, type: FINAL}
"""
    with pytest.raises(GraphError) as info:
        parse_graph(text)

    rules = [i.rule for i in info.value.issues]
    assert "dangling-edge" in rules
    assert "task-successor" not in rules


def test_fan_out_cycle_without_join_is_rejected() -> None:
    text = """\
name: spin
version: 1.0.0
nodes:
  - {name: split, kind: plan, impl: tests.nodes:FanOutAll}
  - {name: a, kind: task, impl: tests.nodes:Echo}
edges:
  - {from: split, to: a, type: PARALLEL}
  - {from: a, to: split}
  - {from: split, type: FINAL}
"""
    with pytest.raises(GraphError) as info:
        parse_graph(text)

    assert [(i.rule, i.line) for i in info.value.issues] == [("parallel-without-join", 7)]


def test_nested_fan_out_must_still_reach_the_outer_join() -> None:
    # As valid-nested-fan-out.yaml, but after the inner JOIN the branch finishes instead of
    # joining the outer fan-out.
    text = (GRAPHS / "valid-nested-fan-out.yaml").read_text(encoding="utf-8")
    text = text.replace("{from: e, to: outer_join, type: JOIN}", "{from: e, type: FINAL}")
    with pytest.raises(GraphError) as info:
        parse_graph(text)

    found = [(i.rule, i.where) for i in info.value.issues]
    assert found == [("parallel-without-join", "edge split -> a (PARALLEL)")]


def research_builder(*, rounds: int = 3) -> GraphBuilder:
    return (
        GraphBuilder(
            "research",
            version="1.0.0",
            description=(
                "Gather/review loop, a PARALLEL fan-out to three reviewers, a JOIN, a report."
            ),
            defaults=GraphDefaults(
                timeout_s=30,
                retry=RetrySpec(max_attempts=3, initial_interval_s=0.5),
                max_iterations=20,
            ),
        )
        .start("gather")
        .task("gather", Gather, config={"latency_s": 0.05})
        .plan("review", Review, config={"rounds": rounds})
        .task("critique", Reviewer)
        .task("fact_check", Reviewer, config={"latency_s": 0.2})
        .task("style", Reviewer)
        .plan("merge", Merge, local=True)
        .task("publish", Publish)
        .edge("gather", "review")
        .edge("review", "gather")
        .parallel("review", "critique", "fact_check", "style")
        .join("merge", "critique", "fact_check", "style")
        .edge("merge", "publish")
        .final("publish")
        .guardrails(RESEARCH.parent / "policies" / "research.yaml")
    )


def test_builder_and_yaml_give_the_same_graph() -> None:
    from_yaml = load_graph(RESEARCH)
    built = research_builder().build()

    assert built == from_yaml
    assert built.content_hash() == from_yaml.content_hash()


def test_builder_and_yaml_fan_out_fixture_hash_equal() -> None:
    built = (
        GraphBuilder("fan_out", version="2.1.0-beta.1")
        .task("prepare", Echo)
        .plan("split", FanOutAll)
        .task("a", Echo)
        .task("b", Echo)
        .task("c", Echo, timeout_s=5)
        .plan("collect", Collect)
        .edge("prepare", "split")
        .parallel("split", "a", "b", "c")
        .join("collect", "a", "b", "c")
        .final("collect")
        .build()
    )

    assert built.content_hash() == load_graph(GRAPHS / "valid-fan-out.yaml").content_hash()


def test_content_hash_changes_with_content() -> None:
    assert research_builder(rounds=4).build().content_hash() != load_graph(RESEARCH).content_hash()


def test_builder_reports_graph_problems_as_graph_error() -> None:
    builder = (
        GraphBuilder("broken", version="1.0.0")
        .task("work", Echo)
        .plan("decide", Collect)
        .plan("judge", Collect)
        .edge("work", "decide")
        .edge("decide", "ghost")
        .edge("decide", "judge")
        .final("decide")
        .final("judge")
    )
    with pytest.raises(GraphError) as info:
        builder.build()

    found = {(i.rule, i.where) for i in info.value.issues}
    assert found == {
        ("dangling-edge", "edge decide -> ghost (NORMAL)"),
        ("alternation", "edge decide -> judge (NORMAL)"),
        ("unreachable", "node 'judge'"),
    }
    assert {(i.file, i.line) for i in info.value.issues} == {("<builder>", None)}


def test_builder_reports_bad_field_values_as_graph_error() -> None:
    builder = (
        GraphBuilder("broken", version="1.0.0")
        .task("work", Echo, timeout_s=-1, retry=RetrySpec(max_attempts=3))
        .plan("decide", Collect, retry={"max_attempts": 0})
        .edge("work", "decide")
        .final("decide")
    )
    with pytest.raises(GraphError) as info:
        builder.build()

    found = {(i.rule, i.where, i.file) for i in info.value.issues}
    assert found == {
        ("bad-timeout", "node 'work'", "<builder>"),
        ("bad-retry", "node 'decide'", "<builder>"),
    }


def test_issue_str_reads_file_line_subject_message_rule() -> None:
    path = GRAPHS / "invalid-local-task.yaml"
    [issue] = load_issues(path)

    assert str(issue) == (
        f"{path}:5: node 'work': only plans may run as local activities; "
        "remove 'local: true' [local-task]"
    )


@pytest.mark.parametrize(
    ("issue", "text"),
    [
        (
            GraphIssue(rule="no-nodes", message="a graph needs at least one node"),
            "<graph>: a graph needs at least one node [no-nodes]",
        ),
        (
            GraphIssue(rule="dangling-edge", message="m", file="g.yaml", where="edge a -> b"),
            "g.yaml: edge a -> b: m [dangling-edge]",
        ),
        (
            GraphIssue(rule="unknown-start", message="m", file="g.yaml", line=3),
            "g.yaml:3: m [unknown-start]",
        ),
    ],
)
def test_issue_str_leaves_out_what_is_unknown(issue: GraphIssue, text: str) -> None:
    assert str(issue) == text


def test_graph_error_str_counts_and_lists_issues() -> None:
    one = GraphIssue(rule="no-nodes", message="a graph needs at least one node", file="g.yaml")

    assert str(GraphError([one])) == (
        "1 problem in graph definition:\n  g.yaml: a graph needs at least one node [no-nodes]"
    )


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        # An alias back into its own anchor: a cycle, not infinite recursion.
        (
            "name: g\nversion: 1.0.0\nnodes:\n  - &a {name: x, kind: task, impl: 'm:C', "
            "config: *a}\nedges: []\n",
            4,
            "contains it",
        ),
        # A list used as a mapping key: not hashable, not a name.
        ("name: g\nversion: 1.0.0\n? [a, b]\n: 1\nnodes: []\nedges: []\n", 3, "plain names"),
    ],
)
def test_hostile_yaml_shapes_are_graph_errors(text: str, line: int, words: str) -> None:
    with pytest.raises(GraphError) as raised:
        parse_graph(text, file="hostile.yaml")
    [issue] = raised.value.issues
    assert (issue.rule, issue.line) == ("schema", line)
    assert words in issue.message
