"""What the offline model answers in this example (offline.yaml names these functions).

Each answer is a function of the messages, not of a call count, so the branches of the
fan-out (which share the ``write`` and ``validate`` scripts) each get their own answer in
whatever order they run, and a worker gives the same answers to every lifetime.
"""

from __future__ import annotations

import json
import re
from typing import Any

from graphrunner.llm.offline import Answer, ToolRound

_FILES = {
    "todo.py": (
        "Command line: add, list and done subcommands",
        '"""A todo list for the terminal."""\n\nimport argparse\n\nimport storage\n\n\n'
        "def main(argv=None):\n"
        '    parser = argparse.ArgumentParser(prog="todo")\n'
        '    parser.add_argument("action", choices=["add", "list", "done"])\n'
        '    parser.add_argument("text", nargs="?")\n'
        "    args = parser.parse_args(argv)\n"
        "    items = storage.load()\n"
        '    if args.action == "add":\n'
        '        items.append({"text": args.text, "done": False})\n'
        '    elif args.action == "done":\n'
        '        items[int(args.text) - 1]["done"] = True\n'
        "    for n, item in enumerate(items, 1):\n"
        '        print(n, "[x]" if item["done"] else "[ ]", item["text"])\n'
        "    storage.save(items)\n"
        "    return 0\n\n\n"
        'if __name__ == "__main__":\n'
        "    raise SystemExit(main())\n",
    ),
    "storage.py": (
        "Load and save the items as JSON in the home folder",
        '"""The todo items, as JSON in ~/.todo.json."""\n\n'
        "import json\nfrom pathlib import Path\n\n"
        'PATH = Path.home() / ".todo.json"\n\n\n'
        "def load(path=PATH):\n"
        "{load}\n\n\n"
        "def save(items, path=PATH):\n"
        '    tmp = path.with_suffix(".tmp")\n'
        "    tmp.write_text(json.dumps(items, indent=2))\n"
        "    tmp.replace(path)\n",
    ),
    "README.md": (
        "What the app does and how to run it",
        "# todo\n\nA todo list for the terminal, kept in `~/.todo.json`.\n\n"
        '```sh\npython todo.py add "buy milk"\npython todo.py list\npython todo.py done 1\n```\n',
    ),
    "test_todo.py": (
        "Tests of adding, listing and finishing items",
        '"""Tests of the todo app."""\n\nimport storage\n\n\n'
        "def test_a_missing_file_is_an_empty_list(tmp_path):\n"
        '    assert storage.load(tmp_path / "none.json") == []\n\n\n'
        "def test_saved_items_load_back(tmp_path):\n"
        '    storage.save([{"text": "a", "done": False}], tmp_path / "t.json")\n'
        '    assert storage.load(tmp_path / "t.json")[0]["text"] == "a"\n',
    ),
}
_FIRST_LOAD = "    # TODO: a missing file\n    return json.loads(path.read_text())"
_FIXED_LOAD = (
    "    if not path.exists():\n        return []\n    return json.loads(path.read_text())"
)


def _user(messages: list[dict[str, Any]]) -> str:
    return next((str(m["content"]) for m in messages if m.get("role") == "user"), "")


def design(messages: list[dict[str, Any]]) -> Answer:
    """Ask where the items live until someone said; then plan the files (tests if asked)."""
    said = _user(messages)
    if "agent:" not in said:
        question = "Should the todo items be kept between runs, and if so where?"
        return {"kind": "clarify", "question": question, "app": "todo", "files": []}
    names = ["todo.py", "storage.py", "README.md"]
    if re.search(r"user: reject:.*\btest", said):
        names.append("test_todo.py")
    files = [{"path": name, "purpose": _FILES[name][0]} for name in names]
    return {"kind": "files", "question": "", "app": "todo", "files": files}


def _field(text: str, name: str) -> str:
    found = re.search(rf"^{name}: (.*)$", text, re.MULTILINE)
    return found.group(1).strip() if found else ""


def write(messages: list[dict[str, Any]]) -> Answer:
    """Call write_file with the file's text (storage.py's first try leaves a TODO), then report."""
    asked = _user(messages)
    path = _field(asked, "File")
    if any(m.get("role") == "tool" for m in messages):
        return {"path": path, "summary": f"wrote {path}"}
    content = _FILES.get(path, ("", f"# {path}\n"))[1]
    first = _field(asked, "Feedback") in ("", "none")
    content = content.replace("{load}", _FIRST_LOAD if first else _FIXED_LOAD)
    arguments = {"workspace": _field(asked, "Workspace"), "path": path, "content": content}
    return ToolRound([{"name": "write_file", "arguments": arguments}])


def validate(messages: list[dict[str, Any]]) -> Answer:
    """Fail a file that still has a TODO; pass the rest."""
    if "TODO" in _user(messages):
        notes = "load() raises FileNotFoundError when the file is missing: return []."
        return {"grades": {"correctness": "D", "completeness": "C"}, "notes": notes}
    return json.dumps({"grades": {"correctness": "A", "completeness": "A"}, "notes": "good"})
