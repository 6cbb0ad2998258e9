"""The coding agent's tool: write one file into the lifetime's sandbox (no other I/O)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from graphrunner import Settings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def sandbox(workspace: str) -> Path:
    """The folder a workspace's files go to: ``$GRAPHRUNNER_HOME/sandbox/<workspace>``."""
    if not _NAME.match(workspace):
        raise ValueError(f"workspace {workspace!r} is not a plain name")
    return (Settings.from_env().home / "sandbox" / workspace).resolve()


def write_file(workspace: str, path: str, content: str) -> dict[str, object]:
    """Write a text file of the app into the workspace's sandbox.

    Args:
        workspace: The workspace the task names.
        path: The file's path inside the workspace (plain names, '/' between folders).
        content: The file's whole text.
    """
    parts = path.split("/")
    if not parts or not all(_NAME.match(part) for part in parts):
        raise ValueError(f"path {path!r} must be plain names joined by '/'")
    target = sandbox(workspace).joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")
    digest = hashlib.sha256(content.encode()).hexdigest()[:12]
    return {"path": path, "bytes": len(content.encode()), "sha256": digest}
