"""The offline writer, reviser and judge of this example (offline.yaml names them).

Each revision adds what the judge found weak (sources, then dates and cross-checks), and the
judge grades what a draft has, so the run is the same every time: the first draft grades D,
the second C, the third passes with B.
"""

from __future__ import annotations

import json
from typing import Any

from graphrunner.llm.offline import Answer

_ADDITIONS = [
    ("[source:", " Sources: [source: Temporal docs, durable execution] [source: SQLite docs]."),
    ("(as of", " (as of 2025, checked against the current releases)."),
]


def _user(messages: list[dict[str, Any]]) -> str:
    return next((str(m["content"]) for m in messages if m.get("role") == "user"), "")


def write(messages: list[dict[str, Any]]) -> Answer:
    """The first draft: claims without sources or dates."""
    topic = _user(messages).removeprefix("Topic: ").strip()
    return f"{topic}: a workflow engine replays history to recover state after a crash."


def revise(messages: list[dict[str, Any]]) -> Answer:
    """The draft with the first missing addition appended."""
    asked = _user(messages)
    text = asked.partition("Draft:\n")[2].partition("\n\nWeak:")[0]
    for marker, addition in _ADDITIONS:
        if marker not in text:
            return text + addition
    return text


def review(messages: list[dict[str, Any]]) -> Answer:
    """Grade a draft by what it has: sources, then dates and a cross-check."""
    text = _user(messages)
    sourced = "[source:" in text
    dated = "(as of" in text
    grades = {
        "coverage": "B",
        "source_quality": "B" if sourced else "D",
        "consistency": "A",
        "verifiability": "B" if sourced and dated else "C",
        "timeliness": "B" if dated else "C",
    }
    weak = [d for d, g in grades.items() if g in ("C", "D", "F")]
    notes = "weak: " + ", ".join(weak) if weak else "good enough to publish"
    return json.dumps({"grades": grades, "notes": notes})
