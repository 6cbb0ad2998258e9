"""The README's table of settings, generated from the `Settings` model so it cannot drift.

``python -m graphrunner._settings_table`` prints the table; ``--write README.md`` replaces
the README's table between the ``<!-- settings:start -->`` and ``<!-- settings:end -->``
markers, and ``--check README.md`` exits 1 when that table is not the generated one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from graphrunner._settings import Settings

__all__ = ["END", "START", "TEMPORAL_ROWS", "replace_table", "settings_table"]

START = "<!-- settings:start -->"
END = "<!-- settings:end -->"
_REGENERATE = "python -m graphrunner._settings_table --write README.md"
_HINT = (
    f"<!-- Generated from graphrunner/_settings.py (edit the descriptions there): {_REGENERATE} -->"
)

#: Temporal's own variables, read by `temporalio.envconfig` (environment first, then the
#: ``temporal.toml`` profile) exactly as the ``temporal`` CLI reads them.
TEMPORAL_ROWS: tuple[tuple[str, str, str], ...] = (
    (
        "`TEMPORAL_ADDRESS`",
        "`localhost:7233` (the dev port)",
        "Temporal frontend, host:port.",
    ),
    ("`TEMPORAL_NAMESPACE`", "`default`", "Temporal namespace."),
    (
        "`TEMPORAL_API_KEY`",
        "unset",
        "API key (Temporal Cloud, or a server with API-key authorization); turns TLS on.",
    ),
    (
        "`TEMPORAL_TLS`",
        "unset (on with an API key)",
        "`true` connects with TLS.",
    ),
    (
        "`TEMPORAL_TLS_CLIENT_CERT_PATH`, `TEMPORAL_TLS_CLIENT_KEY_PATH` (or `..._DATA`)",
        "unset",
        "mTLS client certificate and key, as files (or inline PEM).",
    ),
    (
        "`TEMPORAL_TLS_SERVER_CA_CERT_PATH` (or `..._DATA`), `TEMPORAL_TLS_SERVER_NAME`, "
        "`TEMPORAL_TLS_DISABLE_HOST_VERIFICATION`",
        "unset",
        "How the server's certificate is checked.",
    ),
    (
        "`TEMPORAL_PROFILE`, `TEMPORAL_CONFIG_FILE`",
        "`default`, `~/.config/temporalio/temporal.toml`",
        "The profile in Temporal's config file that fills in what the variables leave unset.",
    ),
)

_SECRET_WORDS = ("secret", "password", "token", "api_key")


def _is_secret(name: str, field: FieldInfo) -> bool:
    """A field whose value must never be printed: typed SecretStr, or named like a secret."""
    annotation = str(field.annotation)
    return "SecretStr" in annotation or any(word in name for word in _SECRET_WORDS)


def _human(name: str, value: Any) -> str:
    """A default as a person sets it in the environment (sizes also in KiB or MiB)."""
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if name.endswith("_bytes") and isinstance(value, int) and value and value % 1024 == 0:
        kib = value // 1024
        size = f"{kib // 1024} MiB" if kib % 1024 == 0 else f"{kib} KiB"
        return f"`{value}` ({size})"
    return f"`{value}`"


def _default(name: str, field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if _is_secret(name, field):
        return "(secret)"
    return _human(name, value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _bounds(field: FieldInfo) -> str:
    """The allowed range of a number, e.g. `` (1–65535)``; empty when unbounded."""
    rules: dict[str, float] = {}
    for rule in field.metadata:
        for kind in ("ge", "gt", "le", "lt"):
            if isinstance(getattr(rule, kind, None), int | float):
                rules[kind] = getattr(rule, kind)
    if set(rules) == {"ge", "le"}:
        return f" ({_number(rules['ge'])}–{_number(rules['le'])})"
    signs = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
    parts = [f"{signs[kind]} {_number(rules[kind])}" for kind in signs if kind in rules]
    return f" ({', '.join(parts)})" if parts else ""


def _cell(text: str) -> str:
    """Table-safe Markdown: one line, pipes escaped, ``<name>`` kept visible outside code."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    # Even parts are outside `code`: there a bare <tenant> would be read as an HTML tag.
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def settings_table(model: type[BaseModel] = Settings) -> str:
    """The Markdown table of every setting: Temporal's variables, then each model field.

    Each field is ``GRAPHRUNNER_<FIELD>`` with its default (``unset`` for none; a secret's
    value is never shown) and its description, plus the allowed range of a number.

    Args:
        model: The settings model (the default: graphrunner's `Settings`).
    """
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    lines += [f"| {var} | {default} | {meaning} |" for var, default, meaning in TEMPORAL_ROWS]
    for name, field in model.model_fields.items():
        var = f"`GRAPHRUNNER_{name.upper()}`"
        meaning = (field.description or "").rstrip()
        bounds = _bounds(field)
        if bounds:
            meaning = meaning.rstrip(".") + bounds + "."
        lines.append(f"| {var} | {_cell(_default(name, field))} | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def replace_table(text: str, table: str) -> str:
    """``text`` with the part between the settings markers replaced by ``table``.

    Raises:
        ValueError: The markers are missing, repeated or out of order.
    """
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"expected one '{START}' line followed by one '{END}' line")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{_HINT}\n{table}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Print the table, write it into a README, or check the README has it."""
    parser = argparse.ArgumentParser(prog="python -m graphrunner._settings_table")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="README", help="Replace the table there.")
    group.add_argument("--check", type=Path, metavar="README", help="Exit 1 if it differs.")
    args = parser.parse_args(argv)
    table = settings_table()
    target: Path | None = args.write or args.check
    if target is None:
        sys.stdout.write(table)
        return 0
    try:
        text = target.read_text(encoding="utf-8")
        updated = replace_table(text, table)
    except (OSError, ValueError) as exc:
        print(f"error: {target}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if updated != text:
            print(f"error: the settings table in {target} is stale: run {_REGENERATE}")
            return 1
        return 0
    if updated != text:
        target.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
