"""Graph definitions: every rule names its file, line and node/edge; all problems at once.

Fixtures live in tests/fixtures/graphs. In the invalid ones, every line where a problem must be
reported ends in a marker comment ``# <- rule`` (or ``# <- rule, rule``). No Temporal server.
"""

from __future__ import annotations

import re
from datetime import timedelta
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
    "too-large",
    "impl-missing",
    "edge-condition",
    "routing",
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
    ("invalid-too-large.yaml", "too-large", 6, None, "nested too deeply: at most 64 levels"),
    ("invalid-impl-missing.yaml", "impl-missing", 5, "node 'work'", "needs an 'impl'"),
    ("invalid-impl-missing.yaml", "impl-missing", 6, "node 'decide'", "'when' conditions"),
    (
        "invalid-edge-condition.yaml",
        "edge-condition",
        17,
        "edge route -> a (NORMAL)",
        "when (column 7): unknown state field 'round'; this graph declares: rounds, notes",
    ),
    (
        "invalid-edge-condition.yaml",
        "edge-condition",
        18,
        "edge route -> b (NORMAL)",
        "cannot compare a number with a string",
    ),
    (
        "invalid-edge-condition.yaml",
        "edge-condition",
        19,
        "edge route -> c (NORMAL)",
        "when (column 16): expected a value",
    ),
    (
        "invalid-edge-condition.yaml",
        "edge-condition",
        20,
        "edge route -> d (NORMAL)",
        "unknown function 'len'",
    ),
    (
        "invalid-edge-condition.yaml",
        "edge-condition",
        21,
        "edge route -> e (NORMAL)",
        "state field 'notes' is of type 'array'",
    ),
    (
        "invalid-routing.yaml",
        "routing",
        13,
        "edge work -> coded (NORMAL)",
        "a task's one edge is always taken",
    ),
    (
        "invalid-routing.yaml",
        "routing",
        14,
        "edge coded -> a (NORMAL)",
        "plan 'coded' has an 'impl'",
    ),
    ("invalid-routing.yaml", "routing", 8, "node 'two_defaults'", "it has 2"),
    ("invalid-routing.yaml", "routing", 9, "node 'no_default'", "every edge here has a 'when'"),
]

MIXED = ["many-problems.yaml", "every-problem-at-once.yaml"]
INVALID = sorted(p.name for p in GRAPHS.glob("invalid-*.yaml")) + MIXED


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
    assert {case[0] for case in CASES} == set(INVALID) - set(MIXED)


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
        ("valid-when.yaml", "triage", "classify", NodeKind.TASK),
        ("valid-loop-until.yaml", "review_loop", "draft", NodeKind.TASK),
        ("valid-loop-until-state.yaml", "review_loop_state", "draft", NodeKind.TASK),
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
        # Schema errors hide no graph-wide problem: nothing here ever reaches a FINAL edge.
        ("no-final-path", 5, "node 'work'"),
        ("no-final-path", 6, "node 'decide'"),
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
    # judge is reached, through the edge that breaks alternation: that is one problem, not two
    assert found == {
        ("dangling-edge", "edge decide -> ghost (NORMAL)"),
        ("alternation", "edge decide -> judge (NORMAL)"),
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
            "name: g\nversion: 1.0.0\nnodes:\n  - &a {name: x, kind: task, impl: "
            "'tests.nodes:Echo', config: *a}\nedges: [{from: x, type: FINAL}]\n",
            4,
            "contains it",
        ),
        # A list used as a mapping key: not hashable, not a name.
        (
            "name: g\nversion: 1.0.0\n? [a, b]\n: 1\nnodes: [{name: x, kind: task, impl: "
            "'tests.nodes:Echo'}]\nedges: [{from: x, type: FINAL}]\n",
            3,
            "plain names",
        ),
    ],
)
def test_hostile_yaml_shapes_are_graph_errors(text: str, line: int, words: str) -> None:
    with pytest.raises(GraphError) as raised:
        parse_graph(text, file="hostile.yaml")
    [issue] = raised.value.issues
    assert (issue.rule, issue.line) == ("schema", line)
    assert words in issue.message


# -- every problem at once (issue 9, point 2) ---------------------------------------------------

VALID_TEXT = """\
name: base
version: 1.0.0
defaults: {timeout_s: 30, retry: {max_attempts: 2}}
nodes:
  - {name: work, kind: task, impl: tests.nodes:Echo}
  - {name: decide, kind: plan, impl: tests.nodes:LoopThenFinish}
edges:
  - {from: work, to: decide}
  - {from: decide, to: work}
  - {from: decide, type: FINAL}
"""


def issues_in(text: str) -> list[GraphIssue]:
    with pytest.raises(GraphError) as info:
        parse_graph(text, file="g.yaml")
    return info.value.issues


def test_schema_problems_hide_no_graph_problem_and_each_is_reported_once() -> None:
    path = GRAPHS / "every-problem-at-once.yaml"
    issues = load_issues(path)

    assert len(issues) == 7
    assert sorted((i.rule, i.line) for i in issues) == sorted(marked_issues(path))
    [misspelt] = [i for i in issues if i.rule == "schema"]
    assert str(misspelt) == (
        f"{path}:12:56: node 'polish': nodes.2.timout_s: unknown key 'timout_s'; expected one "
        "of: name, kind, impl, description, timeout_s, heartbeat_timeout_s, retry, local, "
        "max_tokens, max_cost_usd, config, graph, task_queue, human, llm; did you mean "
        "'timeout_s'? [schema]"
    )
    [timeout] = [i for i in issues if i.rule == "bad-timeout"]
    assert (timeout.line, timeout.column, timeout.where) == (7, 67, "node 'gather'")
    assert "timeout_s is 1e300; allowed: seconds from 0.001 (1 ms) to 315,360,000" in (
        timeout.message
    )


def test_a_task_to_task_edge_is_one_alternation_error_not_four() -> None:
    text = """\
name: tt
version: 1.0.0
nodes:
  - {name: a, kind: task, impl: tests.nodes:Echo}
  - {name: b, kind: task, impl: tests.nodes:Echo}
  - {name: p, kind: plan, impl: tests.nodes:Collect}
edges:
  - {from: a, to: b}
  - {from: b, to: p}
  - {from: p, to: a}
  - {from: p, type: FINAL}
"""
    [issue] = issues_in(text)

    assert (issue.rule, issue.line, issue.where) == ("alternation", 8, "edge a -> b (NORMAL)")


# Each case: a schema error whose stand-in could trip graph-wide rules about its node or edge
# (it must not), and one real graph-wide problem elsewhere (it must be reported).
def with_orphan(text: str) -> str:
    """``text`` with a task 'orphan' (line 7) that nothing leads to."""
    orphan = "  - {name: orphan, kind: task, impl: tests.nodes:Echo}\n"
    return text.replace("edges:\n", orphan + "edges:\n  - {from: orphan, to: decide}\n")


STAND_IN_CASES = {
    # A misspelt kind: as a stand-in task, 'decide' would break alternation and have 3 edges.
    "kind": (
        with_orphan(VALID_TEXT.replace("kind: plan", "kind: plna")),
        [("schema", 6), ("unreachable", 7)],
    ),
    # No name: the edges naming 'decide' would dangle and everything would be unreachable.
    "name": (
        VALID_TEXT.replace("name: decide, ", "").replace(
            "{name: work,", "{local: true, name: work,"
        ),
        [("schema", 6), ("local-task", 5)],
    ),
    # An edge of no known type: 'work' would have no successor and nothing could finish.
    "edge type": (
        VALID_TEXT.replace("to: decide}", "to: decide, type: SIDEWAYS}").replace(
            "version: 1.0.0", "version: one"
        ),
        [("schema", 8), ("invalid-version", 2)],
    ),
    # A timeout out of range: dropped, 'work' would inherit 5 s, below its 10 s heartbeat.
    "timeout": (
        with_orphan(
            VALID_TEXT.replace("timeout_s: 30", "timeout_s: 5").replace(
                "Echo}", "Echo, timeout_s: .inf, heartbeat_timeout_s: 10}"
            )
        ),
        [("bad-timeout", 5), ("unreachable", 7)],
    ),
    # A node that is not a mapping at all.
    "not a mapping": (
        VALID_TEXT.replace("nodes:\n", "nodes:\n  - just a name\n").replace(
            "name: base", "name: b a s e"
        ),
        [("schema", 5), ("invalid-name", 1)],
    ),
    # A misspelt 'type' on a JOIN: the fan-in rules cannot know the branch is closed.
    "edge key": (
        """\
name: fan
version: 1.0.0
nodes:
  - {name: split, kind: plan, impl: tests.nodes:FanOutAll}
  - {name: a, kind: task, impl: tests.nodes:Echo}
  - {name: merge, kind: plan, impl: tests.nodes:Collect}
  - {name: orphan, kind: task, impl: tests.nodes:Echo}
edges:
  - {from: split, to: a, type: PARALLEL}
  - {from: a, to: merge, tpye: JOIN}
  - {from: merge, type: FINAL}
  - {from: orphan, to: merge}
""",
        [("schema", 10), ("unreachable", 7)],
    ),
}


@pytest.mark.parametrize(("text", "expected"), STAND_IN_CASES.values(), ids=STAND_IN_CASES)
def test_a_schema_error_adds_no_graph_error_and_hides_none(
    text: str, expected: list[tuple[str, int]]
) -> None:
    assert sorted((i.rule, i.line) for i in issues_in(text)) == sorted(expected)


@pytest.mark.parametrize(
    ("where", "key", "suggestion"),
    [
        ("top", "edge", "edges"),
        ("node", "timout_s", "timeout_s"),
        ("node", "heartbeat_s", "heartbeat_timeout_s"),
        ("edge", "tpye", "type"),
        ("defaults", "max_iteration", "max_iterations"),
        ("retry", "max_attempt", "max_attempts"),
        ("node", "colour", None),
    ],
)
def test_an_unknown_key_names_the_allowed_ones_and_the_closest(
    where: str, key: str, suggestion: str | None
) -> None:
    spots = {
        "top": ("nodes:\n", f"{key}: 1\nnodes:\n", 4, 1, "schema"),
        "node": ("Echo}", f"Echo, {key}: 1}}", 5, 54, "schema"),
        "edge": ("to: decide}", f"to: decide, {key}: 1}}", 8, 30, "schema"),
        "defaults": ("{timeout_s: 30,", f"{{{key}: 1, timeout_s: 30,", 3, 12, "schema"),
        "retry": ("{max_attempts: 2}", f"{{{key}: 1, max_attempts: 2}}", 3, 35, "bad-retry"),
    }
    old, new, line, column, rule = spots[where]
    [issue] = issues_in(VALID_TEXT.replace(old, new, 1))

    assert (issue.rule, issue.line, issue.column) == (rule, line, column)
    assert f"unknown key '{key}'; expected one of: " in issue.message
    if suggestion:
        assert issue.message.endswith(f"; did you mean '{suggestion}'?")
    else:
        assert "did you mean" not in issue.message


# -- numbers the server and the workflow see are bounded (issue 9, point 6) -----------------


@pytest.mark.parametrize(
    ("node_setting", "rule", "says"),
    [
        ("retry: {max_attempts: 2147483648}", "bad-retry", "1 to 10,000 attempts"),
        ("retry: {max_attempts: 10001}", "bad-retry", "max_attempts is 10001; allowed: 1 to"),
        ("retry: {max_attempts: 1e30}", "bad-retry", "1 to 10,000 attempts"),
        ("timeout_s: 1e300", "bad-timeout", "timeout_s is 1e300; allowed: seconds"),
        ("timeout_s: .inf", "bad-timeout", "timeout_s is inf; allowed"),
        ("timeout_s: .nan", "bad-timeout", "timeout_s is nan; allowed"),
        ("timeout_s: 315360001", "bad-timeout", "to 315,360,000 (10 years)"),
        ("timeout_s: 0.0001", "bad-timeout", "from 0.001 (1 ms)"),
        ("heartbeat_timeout_s: .inf", "bad-timeout", "heartbeat_timeout_s is inf"),
        ("retry: {initial_interval_s: 1e300}", "bad-retry", "initial_interval_s is 1e300"),
        ("retry: {max_interval_s: .inf}", "bad-retry", "max_interval_s is inf"),
        ("retry: {backoff: 1e30}", "bad-retry", "backoff is 1e+30; allowed: a factor from 1 to"),
        ("retry: {backoff: .nan}", "bad-retry", "backoff is nan"),
        (
            "retry: {non_retryable_errors: [" + ", ".join(["E"] * 65) + "]}",
            "bad-retry",
            "at most 64 names",
        ),
        ("retry: {non_retryable_errors: [" + "E" * 257 + "]}", "bad-retry", "1 too long"),
        ("config: {threshold: .nan}", "schema", "numbers must be finite, found nan"),
    ],
)
def test_every_number_a_node_sets_is_bounded(node_setting: str, rule: str, says: str) -> None:
    text = VALID_TEXT.replace("Echo}", f"Echo, {node_setting}}}", 1)
    [issue] = issues_in(text)

    assert (issue.rule, issue.line, issue.where) == (rule, 5, "node 'work'")
    assert says in issue.message


@pytest.mark.parametrize(
    ("defaults", "rule", "says"),
    [
        ("max_iterations: 1000001", "bad-iterations", "1 to 1,000,000 runs"),
        ("max_iterations: 9223372036854775808", "bad-iterations", "1 to 1,000,000 runs"),
        ("timeout_s: 1e300", "bad-timeout", "defaults.timeout_s is 1e300"),
        ("retry: {max_attempts: 2147483648}", "bad-retry", "1 to 10,000 attempts"),
        ("retry: {backoff: 1001}", "bad-retry", "defaults.retry.backoff is 1001"),
    ],
)
def test_every_number_the_defaults_set_is_bounded(defaults: str, rule: str, says: str) -> None:
    text = VALID_TEXT.replace("{timeout_s: 30, retry: {max_attempts: 2}}", f"{{{defaults}}}")
    [issue] = issues_in(text)

    assert (issue.rule, issue.line, issue.where) == (rule, 3, None)
    assert says in issue.message


def test_the_largest_allowed_numbers_convert_for_temporal() -> None:
    from temporalio.api.common.v1 import RetryPolicy as RetryPolicyProto
    from temporalio.common import RetryPolicy

    ten_years = 10 * 365 * 24 * 3600
    text = VALID_TEXT.replace(
        "{timeout_s: 30, retry: {max_attempts: 2}}",
        f"{{timeout_s: {ten_years}, heartbeat_timeout_s: {ten_years - 1}, "
        f"retry: {{max_attempts: 10000, initial_interval_s: {ten_years}, backoff: 1000, "
        f"max_interval_s: {ten_years}}}, max_iterations: 1000000}}",
    )
    graph = parse_graph(text)
    work = graph.node("work")
    retry = graph.retry(work)
    # What the lifetime workflow does with them (workflows/_lifetime.py), then the SDK.
    policy = RetryPolicy(
        initial_interval=timedelta(seconds=retry.initial_interval_s or 1),
        backoff_coefficient=retry.backoff or 2,
        maximum_interval=timedelta(seconds=retry.max_interval_s or 1),
        maximum_attempts=retry.max_attempts or 0,
    )
    policy.apply_to_proto(RetryPolicyProto())
    assert graph.timeout(work) == timedelta(days=3650)
    assert graph.heartbeat_timeout(work) == timedelta(days=3650, seconds=-1)


def test_sizes_the_server_shows_are_bounded() -> None:
    text = VALID_TEXT.replace("version: 1.0.0", "version: 1.0.0-" + "a" * 123).replace(
        "defaults:", "description: " + "x" * 17_000 + "\ndefaults:"
    )
    found = {(i.rule, i.line): i.message for i in issues_in(text)}

    assert set(found) == {("invalid-version", 2), ("too-large", 3)}
    assert "at most 128 characters" in found["invalid-version", 2]
    assert "at most 16,384 are allowed" in found["too-large", 3]


def test_a_graph_of_more_than_a_thousand_nodes_is_too_large() -> None:
    nodes = "".join(
        f"  - {{name: t{i}, kind: task, impl: tests.nodes:Echo}}\n" for i in range(1001)
    )
    text = f"name: big\nversion: 1.0.0\nnodes:\n{nodes}edges: []\n"
    [issue] = issues_in(text)

    assert (issue.rule, issue.line) == ("too-large", 4)
    assert issue.message == "1,001 nodes; at most 1,000 are allowed"


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "\n\n"])
def test_an_empty_file_is_one_located_error(text: str) -> None:
    [issue] = issues_in(text)

    assert (issue.rule, issue.line, issue.column) == ("schema", 1, 1)
    assert issue.message.endswith("found an empty file")
