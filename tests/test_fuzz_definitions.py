"""Hostile definition files: a graph or policy, or the project's own located error, never more.

Whatever bytes a graph or policy file holds, loading it gives a valid object or a GraphError /
PolicyError whose every issue names the file and a line (and a column where YAML has one),
never another exception, in bounded time and memory. First the reproducers of issue 9 (each
crashed, or ran for minutes, before the loaders shared one bounded YAML reader), then property
tests (hypothesis) over any bytes and over mutations of the valid fixtures.

Budget: 150 derandomized examples per property keep this file near 5 s; FUZZ_EXAMPLES=3000
searches deeper (a few minutes). No Temporal server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphrunner.errors import GraphError, PolicyError
from graphrunner.graph import AgentGraph, load_graph
from graphrunner.guardrails import Policy, load_policy

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SECONDS = 5.0  # per load, however hostile the file (a few ms for ordinary files)
MEGABYTES = 64  # peak Python allocations per load

# No example database: it would leave a .hypothesis folder in the working tree.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    derandomize=True,
    deadline=timedelta(seconds=SECONDS),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

GRAPH = b"""\
name: hostile
version: 1.0.0
nodes:
  - {name: work, kind: task, impl: tests.nodes:Echo, timeout_s: 30}
  - {name: decide, kind: plan, impl: tests.nodes:Collect}
edges:
  - {from: work, to: decide}
  - {from: decide, type: FINAL}
"""


def graph_with(old: bytes, new: bytes) -> bytes:
    assert old in GRAPH
    return GRAPH.replace(old, new, 1)


@contextmanager
def bounded() -> Iterator[None]:
    """Fail unless the block returns within SECONDS and MEGABYTES."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < SECONDS, f"took {elapsed:.1f} s"
    assert peak < MEGABYTES * 1024 * 1024, f"allocated {peak / 2**20:.0f} MiB"


def most_lines(data: bytes) -> int:
    """At least as many lines as YAML can count in ``data`` (it breaks at \\r, \\x85 ...)."""
    return len(data.decode("utf-8", "replace").splitlines()) + data.count(b"\r") + 1


def load_graph_file(path: Path, data: bytes) -> AgentGraph | GraphError:
    """Load ``data`` as the graph file ``path``; check the outcome is the project's own."""
    path.write_bytes(data)
    try:
        with bounded():
            graph = load_graph(path, check_imports=False)
    except GraphError as error:
        assert error.issues
        for issue in error.issues:
            assert issue.file == str(path) and issue.rule and issue.message, issue
            assert issue.line is not None and 1 <= issue.line <= most_lines(data), issue
            assert issue.column is None or issue.column >= 1, issue
        return error
    # A valid graph is pinned as JSON into the workflow input: its hash must survive that.
    again = AgentGraph.model_validate_json(graph.model_dump_json())
    assert again.content_hash() == graph.content_hash()
    return graph


def load_policy_file(path: Path, data: bytes) -> Policy | PolicyError:
    path.write_bytes(data)
    try:
        with bounded():
            return load_policy(path)
    except PolicyError as error:
        for issue in error.issues:
            assert issue.file == str(path) and issue.message, issue
            assert issue.line is not None and 1 <= issue.line <= most_lines(data), issue
            assert issue.column is not None and issue.column >= 1, issue
        return error


# -- the reproducers ----------------------------------------------------------------------------

# name: (file content, rule, line, column, words in the message)
REPRODUCERS: dict[str, tuple[bytes, str, int, int | None, str]] = {
    "latin-1 byte (UnicodeDecodeError)": (
        graph_with(b"version: 1.0.0", b"version: 1.0.0\ndescription: caf\xe9"),
        "yaml-syntax",
        3,
        17,
        "not UTF-8: byte 0xe9 cannot be decoded",
    ),
    "control character (ReaderError)": (
        graph_with(b"decide, type", b"decide\x07, type"),
        "yaml-syntax",
        8,
        18,
        "character '\\x07' is not allowed in YAML",
    ),
    "5,000-deep nesting (RecursionError)": (
        graph_with(b"{name: work,", b"{config: " + b"[" * 5000 + b"]" * 5000 + b", name: work,"),
        "too-large",
        4,
        75,
        "nested too deeply: at most 64 levels are allowed",
    ),
    "merge key (ConstructorError)": (
        graph_with(b"{name: decide", b"{<<: {local: true}, name: decide"),
        "schema",
        5,
        6,
        "merge keys ('<<') are not supported",
    ),
    "unknown tag (ConstructorError)": (
        graph_with(b"impl: tests.nodes:Collect", b"impl: !custom tests.nodes:Collect"),
        "schema",
        5,
        38,
        "unsupported YAML tag '!custom'",
    ),
    "!!int abc (ValueError)": (
        graph_with(b"timeout_s: 30", b"timeout_s: !!int abc"),
        "schema",
        4,
        65,
        "cannot read this value as an integer: 'abc'",
    ),
    "!!bool maybe (KeyError)": (
        graph_with(b"timeout_s: 30", b"timeout_s: !!bool maybe"),
        "schema",
        4,
        65,
        "cannot read this value as true or false: 'maybe'",
    ),
    "!!timestamp yesterday (AttributeError)": (
        graph_with(b"timeout_s: 30", b"timeout_s: !!timestamp yesterday"),
        "schema",
        4,
        65,
        "cannot read this value as a date or time: 'yesterday'",
    ),
    "5,000-digit integer (ValueError)": (
        graph_with(b"timeout_s: 30", b"timeout_s: " + b"9" * 5000),
        "schema",
        4,
        65,
        "cannot read this value as an integer: '9999",
    ),
    "timeout_s: 1e300 (OverflowError)": (
        graph_with(b"timeout_s: 30", b"timeout_s: 1e300"),
        "bad-timeout",
        4,
        65,
        "timeout_s is 1e300; allowed: seconds from 0.001 (1 ms) to 315,360,000 (10 years)",
    ),
    "timeout_s: .inf (OverflowError)": (
        graph_with(b"timeout_s: 30", b"timeout_s: .inf"),
        "bad-timeout",
        4,
        65,
        "timeout_s is inf; allowed",
    ),
    "5,000-character guardrails path (OSError)": (
        GRAPH + b"guardrails: " + b"x" * 5000 + b"\n",
        "guardrails",
        9,
        None,
        "cannot be a policy file: File name too long",
    ),
    "empty document": (b"", "schema", 1, 1, "found an empty file"),
    "a comment and nothing else": (b"# to do\n", "schema", 1, 1, "found an empty file"),
}


@pytest.mark.parametrize(
    ("data", "rule", "line", "column", "says"), REPRODUCERS.values(), ids=REPRODUCERS
)
def test_a_hostile_graph_file_is_one_located_graph_error(
    tmp_path: Path, data: bytes, rule: str, line: int, column: int | None, says: str
) -> None:
    error = load_graph_file(tmp_path / "graph.yaml", data)

    assert isinstance(error, GraphError)
    assert [(i.rule, i.line, i.column) for i in error.issues] == [(rule, line, column)]
    assert says in error.issues[0].message


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda d: (d / "policy.yaml").mkdir(), "cannot read the policy file: it is a directory"),
        (
            lambda d: (d / "policy.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00"),
            "policy.yaml:1:1: cannot read the policy file: not UTF-8: byte 0x89",
        ),
        (
            lambda d: (d / "policy.yaml").write_bytes(GRAPH),
            "policy.yaml:1:1: this is a graph file (it has 'nodes' and 'edges'), not a guardrail",
        ),
        (
            lambda d: (d / "policy.yaml").write_bytes(b"rules:\n  - name: caf\xe9\n"),
            "policy.yaml:2:14: cannot read the policy file: not UTF-8: byte 0xe9",
        ),
    ],
    ids=["directory", "binary file", "graph file", "latin-1 policy"],
)
def test_a_guardrails_path_that_is_no_policy_is_one_clear_problem(
    tmp_path: Path, make: Callable[[Path], object], says: str
) -> None:
    make(tmp_path)
    error = load_graph_file(tmp_path / "graph.yaml", GRAPH + b"guardrails: policy.yaml\n")

    assert isinstance(error, GraphError)
    [issue] = error.issues
    assert (issue.rule, issue.line) == ("guardrails", 9)
    assert says in issue.message


def billion_laughs() -> bytes:
    """600 bytes that expand to 9**9 (387 million) values: a node config of nine nested aliases."""
    levels = [b'  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        aliases = ",".join([f"*{previous}"] * 9)
        levels.append(f"  {name}: &{name} [{aliases}]\n".encode())
    return b"laughs:\n" + b"".join(levels) + graph_with(b"timeout_s: 30}", b"config: {x: *i}}")


LOAD_IN_A_SUBPROCESS = """
import json, sys, time, tracemalloc
from graphrunner.errors import GraphError
from graphrunner.graph import load_graph
tracemalloc.start()
start = time.perf_counter()
try:
    load_graph(sys.argv[1], check_imports=False)
    issues = []
except GraphError as error:
    issues = [[i.rule, i.line, i.column, i.message] for i in error.issues]
print(json.dumps({"issues": issues, "seconds": time.perf_counter() - start,
                  "peak": tracemalloc.get_traced_memory()[1]}))
"""


def test_a_billion_laughs_stops_at_the_value_budget(tmp_path: Path) -> None:
    data = billion_laughs()
    assert len(data) == 600
    path = tmp_path / "laughs.yaml"
    path.write_bytes(data)
    # In a subprocess with a memory ceiling: a loader without a budget would take the machine.
    limit = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({2**31}, {2**31}))\n"
    result = subprocess.run(
        [sys.executable, "-c", limit + LOAD_IN_A_SUBPROCESS, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["seconds"] < SECONDS
    assert report["peak"] < MEGABYTES * 1024 * 1024
    [[rule, line, column, message]] = report["issues"]
    # An alias is its anchor's node again: the place is that of the value being repeated.
    assert (rule, line, column) == ("too-large", 2, 10)
    assert message.startswith("too large: more than 100,000 values once aliases are expanded")


# -- any bytes, and mutations of valid files ----------------------------------------------------

VALID_GRAPHS = [path.read_bytes() for path in sorted((FIXTURES / "graphs").glob("valid-*.yaml"))]
VALID_POLICIES = [path.read_bytes() for path in sorted((FIXTURES / "policies").glob("valid-*"))]
YAML_TOKENS = [
    *(b"&a ", b"*a", b"&b [*a, *a, *a] ", b"!!", b"!!int ", b"!!binary ", b"!!set ", b"!custom "),
    *(b"<<: ", b"<<: *a", b"? ", b"- ", b": ", b"[", b"]", b"{", b"}", b"'", b'"', b"|", b">"),
    *(b"\n", b"\n  ", b"#", b"\t", b"\r", b"---\n", b"...\n", b"%YAML 1.1\n", b"~", b"="),
    *(b".inf", b"-.inf", b".nan", b"1e300", b"2147483648", b"0", b"-1", b"9" * 40),
    *(b"\x00", b"\x07", b"\xe9", b"\xff\xfe", b"\xc3", b"\xef\xbb\xbf", b"\xe2\x80\xa8"),
    *(b"timout_s: 1", b"kind: plan", b"type: JOIN", b"to: ghost", b"guardrails: .", b"x" * 300),
]
pieces = st.one_of(
    st.sampled_from(YAML_TOKENS),
    st.binary(max_size=4),
    st.integers(1, 400).map(lambda depth: b"[" * depth),  # deep nesting
    st.integers(1, 400).map(lambda depth: b"{a: " * depth),
)
edits = st.lists(
    st.tuples(st.floats(0, 1), st.sampled_from(["insert", "delete", "flip", "replace"]), pieces),
    min_size=1,
    max_size=8,
)


def mutate(data: bytes, changes: list[tuple[float, str, bytes]]) -> bytes:
    for where, how, piece in changes:
        at = int(where * len(data))
        if how == "insert":
            data = data[:at] + piece + data[at:]
        elif how == "delete":
            data = data[:at] + data[at + len(piece) + 1 :]
        elif how == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([data[at] ^ (1 << (len(piece) % 8))]) + data[at + 1 :]
        else:
            data = data[:at] + piece + data[at + len(piece) :]
    return data


@FUZZ
@given(st.binary(max_size=3000))
def test_any_bytes_as_a_graph_file_give_a_graph_or_a_located_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        load_graph_file(Path(folder) / "graph.yaml", data)


@FUZZ
@given(st.sampled_from(VALID_GRAPHS), edits)
def test_mutated_graph_files_give_a_graph_or_a_located_error(
    data: bytes, changes: list[tuple[float, str, bytes]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        load_graph_file(Path(folder) / "graph.yaml", mutate(data, changes))


@FUZZ
@given(st.binary(max_size=3000))
def test_any_bytes_as_a_policy_file_give_a_policy_or_a_located_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        load_policy_file(Path(folder) / "policy.yaml", data)


@FUZZ
@given(st.sampled_from(VALID_POLICIES), edits)
def test_mutated_policy_files_give_a_policy_or_a_located_error(
    data: bytes, changes: list[tuple[float, str, bytes]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        load_policy_file(Path(folder) / "policy.yaml", mutate(data, changes))
