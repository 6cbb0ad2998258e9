"""The offline report writer of this example (offline.yaml names it): the findings as markdown."""

from __future__ import annotations

import json
from typing import Any

from graphrunner.llm.offline import Answer


def report(messages: list[dict[str, Any]]) -> Answer:
    """A markdown report of both reviews, worst severity first."""
    asked = next(str(m["content"]) for m in messages if m.get("role") == "user")
    reviews = json.loads(asked.partition("\n")[2])
    order = {"high": 0, "medium": 1, "low": 2}
    lines = ["# Review", ""]
    for name in ("architecture", "quality"):
        review = reviews[name]
        lines += [f"## {name.capitalize()}: {review['verdict']}", ""]
        for f in sorted(review["findings"], key=lambda f: (order[f["severity"]], f["unit"])):
            lines.append(f"- [{f['severity']}] unit {f['unit']} ({f['file']}): {f['comment']}")
        lines.append("")
    return "\n".join(lines)
