"""The definition commands of the real CLI: ``validate``, ``schema`` and ``graph``.

Each test runs ``python -m graphrunner`` in a subprocess from the repository root, as a user
would. None of these commands needs a Temporal server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from graphrunner.errors import GraphError, GraphIssue
from graphrunner.graph import EdgeType, load_graph

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = ROOT / "tests" / "fixtures" / "graphs"
RESEARCH = "examples/research.yaml"
MANY = GRAPHS / "many-problems.yaml"


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graphrunner", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def issues_of(path: Path) -> list[GraphIssue]:
    with pytest.raises(GraphError) as info:
        load_graph(path)
    return info.value.issues


def test_validate_accepts_the_example() -> None:
    result = cli("validate", RESEARCH)

    assert result.returncode == 0, result.stderr
    assert "graph 'research' 1.0.0 is valid (7 nodes, 10 edges)" in result.stdout
    assert result.stderr == ""


def test_validate_lists_every_problem_with_file_and_line() -> None:
    result = cli("validate", MANY)
    expected = issues_of(MANY)

    assert result.returncode != 0
    printed = [line for line in result.stderr.splitlines() if line.startswith("✗ ")]
    assert len(printed) == len(expected) == 15
    for issue, line in zip(expected, printed, strict=True):
        assert line.startswith(f"✗ {MANY}:{issue.line}: ")
        assert issue.message in line
        if issue.where:
            assert f": {issue.where}: " in line
    assert f"15 problem(s) in {MANY}" in result.stderr.splitlines()[-1]


def test_validate_prints_each_rule_name() -> None:
    result = cli("validate", MANY)

    printed = result.stderr.splitlines()
    for issue in issues_of(MANY):
        assert f"✗ {issue}" in printed


def test_validate_json_lists_issues() -> None:
    result = cli("validate", "--json", MANY)

    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["issues"] == [
        {
            "rule": i.rule,
            "message": i.message,
            "file": i.file,
            "line": i.line,
            "where": i.where,
            "column": i.column,
        }
        for i in issues_of(MANY)
    ]


def test_validate_json_of_a_valid_graph_gives_its_pinned_hash() -> None:
    result = cli("validate", "--json", RESEARCH)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "valid": True,
        "name": "research",
        "version": "1.0.0",
        "hash": load_graph(ROOT / RESEARCH).content_hash(),
    }


def test_validate_no_imports_skips_implementation_checks() -> None:
    fixture = GRAPHS / "invalid-impl-import.yaml"

    assert cli("validate", fixture).returncode != 0
    assert cli("validate", "--no-imports", fixture).returncode == 0


def test_validate_reports_schema_and_graph_problems_together() -> None:
    fixture = GRAPHS / "every-problem-at-once.yaml"
    result = cli("validate", fixture)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    printed = [line for line in result.stderr.splitlines() if line.startswith("✗ ")]
    assert [line.rsplit(" [", 1)[1] for line in printed] == [
        "bad-timeout]",
        "bad-retry]",
        "schema]",
        "dangling-edge]",
        "alternation]",
        "unreachable]",
        "join-without-parallel]",
    ]
    assert printed[2].startswith(f"✗ {fixture}:12:56: node 'polish': nodes.2.timout_s: ")
    assert printed[2].endswith("; did you mean 'timeout_s'? [schema]")
    assert result.stderr.splitlines()[-1].endswith(f"7 problem(s) in {fixture}")


@pytest.mark.parametrize(
    ("content", "place", "says"),
    [
        (b"name: g\ndescription: caf\xe9\n", "2:17", "not UTF-8: byte 0xe9"),
        (b"name: g\nversion: 1.0.0\x07\n", "2:15", "character '\\x07' is not allowed"),
        (b"name: g\nnodes: " + b"[" * 5000 + b"]" * 5000, "2:71", "nested too deeply"),
        (b"name: g\n<<: {version: 1.0.0}\n", "2:1", "merge keys ('<<') are not supported"),
    ],
    ids=["latin-1", "control", "deep", "merge"],
)
def test_validate_of_hostile_yaml_prints_located_errors(
    tmp_path: Path, content: bytes, place: str, says: str
) -> None:
    graph = tmp_path / "hostile.yaml"
    graph.write_bytes(content)
    result = cli("validate", graph)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert any(
        line.startswith(f"✗ {graph}:{place}: ") and says in line
        for line in result.stderr.splitlines()
    ), result.stderr


def test_validate_of_a_missing_file_is_one_clear_error() -> None:
    result = cli("validate", "no/such/graph.yaml")

    assert result.returncode != 0
    assert "no/such/graph.yaml" in result.stderr
    assert "Traceback" not in result.stderr


# Keywords that do not constrain a value; every other keyword must be understood by `conforms`.
ANNOTATIONS = {"title", "description", "default", "$schema", "$id", "$defs"}
TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def conforms(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> bool:
    """A small JSON Schema check: just the keywords the graph schema uses (see ANNOTATIONS)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return conforms(value, root["$defs"][name], root)
    if "anyOf" in schema:
        return any(conforms(value, option, root) for option in schema["anyOf"])
    if "type" in schema:
        bad_bool = isinstance(value, bool) and schema["type"] in ("number", "integer")
        if bad_bool or not isinstance(value, TYPES[schema["type"]]):
            return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "const" in schema and value != schema["const"]:
        return False
    if "minLength" in schema and len(value) < schema["minLength"]:
        return False
    if "minimum" in schema and value < schema["minimum"]:
        return False
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        return False
    if "maximum" in schema and value > schema["maximum"]:
        return False
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return False
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return False
    if "minItems" in schema and len(value) < schema["minItems"]:
        return False
    if isinstance(value, list) and "items" in schema:
        return all(conforms(item, schema["items"], root) for item in value)
    if isinstance(value, dict):
        if not set(schema.get("required", [])) <= set(value):
            return False
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                if not conforms(item, properties[key], root):
                    return False
            elif schema.get("additionalProperties", True) is False:
                return False
    return True


def keywords(schema: Any) -> set[str]:
    if isinstance(schema, list):
        return set().union(*(keywords(item) for item in schema))
    if not isinstance(schema, dict):
        return set()
    found = set(schema)
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            found |= set().union(*(keywords(v) for v in value.values()))
        elif key not in ("enum", "required", "default"):
            found |= keywords(value)
    return found


@pytest.fixture(scope="module")
def graph_schema() -> dict[str, Any]:
    result = cli("schema")
    assert result.returncode == 0, result.stderr
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


def test_schema_is_a_json_schema_of_the_graph_format(graph_schema: dict[str, Any]) -> None:
    assert graph_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert graph_schema["type"] == "object"
    assert {"nodes", "edges", "name", "version", "start", "defaults"} <= set(
        graph_schema["properties"]
    )
    assert set(graph_schema["required"]) == {"name", "version", "nodes", "edges"}
    edge = graph_schema["$defs"]["EdgeSpec"]
    # the YAML spelling, not Python's
    assert set(edge["properties"]) == {"from", "to", "type", "when"}
    when = edge["properties"]["when"]["description"]
    assert "output.<key>" in when and "state.<field>" in when and "without 'when'" in when
    node = graph_schema["$defs"]["NodeSpec"]["properties"]
    assert "A plan may have none when the 'when' conditions" in node["impl"]["description"]
    assert graph_schema["$defs"]["EdgeType"]["enum"] == [t.value for t in EdgeType]


def test_schema_only_uses_keywords_this_test_checks(graph_schema: dict[str, Any]) -> None:
    checked = {"$ref", "anyOf", "type", "enum", "minimum", "exclusiveMinimum", "maximum"}
    checked |= {"items", "maxItems", "minItems", "maxLength", "minLength", "const"}
    checked |= {"required", "properties", "additionalProperties"}
    assert keywords(graph_schema) <= checked | ANNOTATIONS


@pytest.mark.parametrize(
    "path",
    [
        ROOT / RESEARCH,
        *sorted(GRAPHS.glob("valid-*.yaml")),
    ],
    ids=lambda p: p.name,
)
def test_valid_graphs_conform_to_the_schema(path: Path, graph_schema: dict[str, Any]) -> None:
    assert conforms(yaml.safe_load(path.read_text(encoding="utf-8")), graph_schema, graph_schema)


@pytest.mark.parametrize(
    "fixture",
    [
        "invalid-schema.yaml",
        "invalid-bad-retry-range.yaml",
        "invalid-bad-timeout-range.yaml",
        "invalid-bad-iterations.yaml",
    ],
)
def test_schema_rejects_shape_errors(fixture: str, graph_schema: dict[str, Any]) -> None:
    data = yaml.safe_load((GRAPHS / fixture).read_text(encoding="utf-8"))

    assert not conforms(data, graph_schema, graph_schema)


ARROWS = {
    EdgeType.NORMAL: "-->",
    EdgeType.PARALLEL: "==>|PARALLEL|",
    EdgeType.JOIN: "-->|JOIN|",
    EdgeType.FINAL: "-->",
}


def test_graph_prints_a_mermaid_flowchart_with_every_edge() -> None:
    result = cli("graph", RESEARCH)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    assert "    START --> gather" in lines
    assert '    gather["gather<br/><small>task</small>"]' in lines
    assert '    review{{"review<br/><small>plan</small>"}}' in lines
    for line in (
        "    gather --> review",
        "    review --> gather",
        "    review ==>|PARALLEL| critique",
        "    critique -->|JOIN| merge",
        "    publish --> END",
    ):
        assert line in lines
    graph = load_graph(ROOT / RESEARCH)
    edge_lines = [f"    {e.source} {ARROWS[e.type]} {e.target or 'END'}" for e in graph.edges]
    assert [line for line in lines if line in edge_lines] == edge_lines


def test_graph_of_an_invalid_file_fails_without_a_chart() -> None:
    fixture = GRAPHS / "invalid-dangling-edge.yaml"
    result = cli("graph", fixture)

    assert result.returncode != 0
    assert result.stdout == ""
    assert f"{fixture}:10: edge decide -> ghost (NORMAL): target 'ghost' is not a node" in (
        result.stderr
    )
