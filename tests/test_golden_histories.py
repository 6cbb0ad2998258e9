"""Golden histories replay on the current code: a nondeterministic change fails here, in CI.

``tests/histories/*.json``: one lifetime of every example graph (children included), recorded
by ``.venv/bin/python -m tests.record_examples``. ``tests/histories/patches``: histories from
graphrunners before each ``workflow.patched`` change, which must keep replaying forever.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from graphrunner.client._replay import replay_histories
from graphrunner.guardrails._gate import POLICY_LAYERS
from graphrunner.guardrails._holds import RECORD_CANCEL
from graphrunner.workflows._lifetime import CHILD_RECORD_PATCH, CONTINUE_PATCH
from graphrunner.workflows._phase import BOARD_PATCH
from tests.conftest import ROOT
from tests.record_examples import workflow_id

HISTORIES = ROOT / "tests" / "histories"
GOLDEN = sorted(p.stem for p in HISTORIES.glob("*.json"))

# Every workflow.patched id in graphrunner -> a history recorded without it (its old branch).
# The README's "Upgrading workers" table lists the same; add both with every new patch.
PATCH_HISTORIES = {
    BOARD_PATCH: "histories/patches/attributes-v1-before-upserts.json",
    RECORD_CANCEL: "histories/patches/cancelled-v1-before-cancel-records.json",
    # Recorded by graphrunner 0e5fd67 on a dev server started with --dynamic-config-value
    # limit.historyCount.suggestContinueAsNew=40: Temporal suggested continuing as new in
    # its last workflow tasks, and the old code went on in the same run.
    CONTINUE_PATCH: "histories/patches/long-loop-v1-before-continue-as-new.json",
    # The lead agent's golden history before sub-graph tasks were recorded (0e5fd67), under
    # its own name: its children's ids derive from it.
    CHILD_RECORD_PATCH: "histories/patches/before-child-records/lead-agent.json",
    # The quiet start came with the format-2 guardrails (older formats are refused by name):
    # its old branch is a lifetime with no worker layers, so no marker and no policy snapshot.
    POLICY_LAYERS: "fixtures/histories/fan-count-v2.json",
}
_PATCHED = re.compile(r"workflow\.patched\((\w+)\)")


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(workflow_id(path), path.read_text())


def test_every_example_graph_has_a_golden_history() -> None:
    folder = ROOT / "examples"
    examples = {p.stem.replace("_", "-") for p in folder.glob("*.yaml")}
    # A package example (examples/<name>/graph.yaml) is named by its folder.
    examples |= {p.parent.name.replace("_", "-") for p in folder.glob("*/graph.yaml")}
    # point_agent runs as lead_agent's child: its histories are lead-agent__solve-*.
    assert examples - {"point-agent"} <= set(GOLDEN), "run python -m tests.record_examples"
    assert any(name.startswith("lead-agent__solve-") for name in GOLDEN)


@pytest.mark.parametrize("name", GOLDEN)
async def test_a_golden_history_replays_on_the_current_code(name: str) -> None:
    [verdict] = await replay_histories([_history(HISTORIES / f"{name}.json")])
    assert verdict.ok, f"{name}: {verdict.error} ({verdict.step}): {verdict.hint}"


def test_every_patch_in_the_code_has_an_old_version_history() -> None:
    constants = {"BOARD_PATCH": BOARD_PATCH, "POLICY_LAYERS": POLICY_LAYERS}
    constants["RECORD_CANCEL"] = RECORD_CANCEL
    constants["CONTINUE_PATCH"] = CONTINUE_PATCH
    constants["CHILD_RECORD_PATCH"] = CHILD_RECORD_PATCH
    used = set()
    for source in (ROOT / "graphrunner").rglob("*.py"):
        for found in _PATCHED.findall(source.read_text()):
            assert found in constants, f"{source}: workflow.patched({found}) is not in the table"
            used.add(constants[found])
    assert used == set(PATCH_HISTORIES), "each patch id needs a history recorded without it"
    readme = (ROOT / "README.md").read_text()
    for patch, path in PATCH_HISTORIES.items():
        assert (ROOT / "tests" / path).exists(), path
        assert f"`{patch}`" in readme and f"`tests/{path}`" in readme, f"README table: {patch}"


@pytest.mark.parametrize("patch", sorted(PATCH_HISTORIES))
async def test_an_old_version_history_of_each_patch_replays(patch: str) -> None:
    history = _history(ROOT / "tests" / PATCH_HISTORIES[patch])
    marker = patch.encode()
    assert not any(
        e.HasField("marker_recorded_event_attributes")
        and any(
            marker in p.data
            for ps in e.marker_recorded_event_attributes.details.values()
            for p in ps.payloads
        )
        for e in history.events
    ), f"{patch}: this history has the marker, so it does not take the old branch"
    if patch == CONTINUE_PATCH:  # the old branch is taken only where Temporal suggested it
        assert any(
            e.workflow_task_started_event_attributes.suggest_continue_as_new
            for e in history.events
            if e.HasField("workflow_task_started_event_attributes")
        )
    [verdict] = await replay_histories([history])
    assert verdict.ok, f"{patch}: {verdict.error}"
