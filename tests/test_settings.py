"""Settings: the README's table is the model's, and a bad setting stops a command at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretStr

from graphrunner import Settings
from graphrunner._settings_table import END, START, replace_table, settings_table
from graphrunner.errors import GraphrunnerError

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "python -m graphrunner._settings_table --write README.md"


def _readme_table() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, "README lost its settings markers"
    return text.split(START, 1)[1].split(END, 1)[0]


def test_the_readme_settings_table_is_the_one_generated_from_the_model() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert replace_table(readme, settings_table()) == readme, (
        f"README.md's settings table differs from graphrunner/_settings.py: run {REGENERATE}"
    )


def test_every_setting_is_in_the_readme_with_its_variable_and_default() -> None:
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in _readme_table().splitlines()
        if line.startswith("| `")
    }
    for name in Settings.model_fields:
        assert f"`GRAPHRUNNER_{name.upper()}`" in rows, f"GRAPHRUNNER_{name.upper()} missing"
    # Defaults as an operator types them, not as Python prints them.
    assert rows["`GRAPHRUNNER_DEV_PORT`"] == "`7233`"
    assert rows["`GRAPHRUNNER_RECORD`"] == "`true`"
    assert rows["`GRAPHRUNNER_CONNECT_TIMEOUT_S`"] == "`5`"
    assert rows["`GRAPHRUNNER_HOME`"] == "`.graphrunner`"
    assert rows["`GRAPHRUNNER_PAYLOAD_THRESHOLD_BYTES`"] == "`262144` (256 KiB)"
    assert rows["`GRAPHRUNNER_DATABASE_URL`"] == "unset"
    assert rows["`GRAPHRUNNER_CODEC_KEYS`"] == "unset"
    for temporal in ("`TEMPORAL_ADDRESS`", "`TEMPORAL_NAMESPACE`", "`TEMPORAL_API_KEY`"):
        assert temporal in rows
    assert "`TEMPORAL_PROFILE`" in _readme_table() and "`TEMPORAL_TLS`" in rows


def test_the_table_shows_ranges_and_keeps_placeholders_visible() -> None:
    table = settings_table()
    port = next(line for line in table.splitlines() if "`GRAPHRUNNER_CODEC_PORT`" in line)
    assert "(1–65535)" in port
    policies = next(line for line in table.splitlines() if "GRAPHRUNNER_TENANT_POLICIES" in line)
    # Inside code; a bare <tenant> would vanish as an unknown HTML tag on GitHub.
    assert "`<tenant>.yaml`" in policies


def test_a_secret_never_shows_its_value_in_the_table() -> None:
    class WithSecrets(BaseModel):
        api_token: str = Field(default="tok-123", description="A token.")
        keys: SecretStr = Field(default=SecretStr("k-456"), description="Keys.")
        db_password: str | None = Field(default=None, description="Unset secret.")

    table = settings_table(WithSecrets)
    assert "tok-123" not in table and "k-456" not in table
    assert "| `GRAPHRUNNER_API_TOKEN` | (secret) | A token. |" in table
    assert "| `GRAPHRUNNER_KEYS` | (secret) | Keys. |" in table
    assert "| `GRAPHRUNNER_DB_PASSWORD` | unset | Unset secret. |" in table


def test_check_fails_on_a_stale_table_and_write_fixes_it(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{START}\n| old | table |\n{END}\n\nafter\n", encoding="utf-8")

    def tool(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "graphrunner._settings_table", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    stale = tool("--check", str(readme))
    assert stale.returncode == 1 and REGENERATE in stale.stdout
    assert tool("--write", str(readme)).returncode == 0
    text = readme.read_text(encoding="utf-8")
    assert "| old | table |" not in text and "`GRAPHRUNNER_TRACING`" in text
    assert text.startswith("# x\n\n") and text.endswith(f"{END}\n\nafter\n")
    assert tool("--check", str(readme)).returncode == 0
    readme.write_text("no markers\n", encoding="utf-8")
    broken = tool("--check", str(readme))
    assert broken.returncode == 2 and START in broken.stderr


BAD = [
    ("GRAPHRUNNER_ISOLATION", "medium"),
    ("GRAPHRUNNER_CODEC_PORT", "0"),
    ("GRAPHRUNNER_TRACING", "x"),
    ("GRAPHRUNNER_LLM", "sometimes"),
    ("GRAPHRUNNER_TENANT_TASK_QUEUES", "perhaps"),
    ("GRAPHRUNNER_ENCRYPT_RECORDS", "2"),
    ("GRAPHRUNNER_CONNECT_TIMEOUT_S", "0"),
    ("GRAPHRUNNER_DEV_UI_PORT", "http"),
]


@pytest.mark.parametrize(("var", "value"), BAD)
def test_a_bad_setting_fails_naming_its_variable(var: str, value: str) -> None:
    with pytest.raises(GraphrunnerError, match=f"^bad setting {var}: "):
        Settings.from_env({var: value})


def test_an_empty_variable_means_the_default_not_an_error() -> None:
    # An empty GRAPHRUNNER_TENANT_NAMESPACE (as compose writes an unset ${VAR}) is unset.
    assert Settings.from_env({"GRAPHRUNNER_TENANT_NAMESPACE": ""}).tenant_namespace == "{tenant}"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graphrunner", *args],
        cwd=ROOT,
        env={**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("command", "var", "value"),
    [
        (["worker"], "GRAPHRUNNER_ISOLATION", "medium"),
        (["worker"], "GRAPHRUNNER_CODEC_PORT", "0"),
        (["list"], "GRAPHRUNNER_TRACING", "x"),
        (["setup"], "GRAPHRUNNER_ISOLATION", "medium"),
    ],
)
def test_the_cli_stops_at_start_with_one_line_naming_the_bad_variable(
    command: list[str], var: str, value: str
) -> None:
    done = _cli({var: value}, *command)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: bad setting {var}: "), done.stderr
    # It stopped before trying the server (TEMPORAL_ADDRESS points at nothing).
    assert "cannot reach Temporal" not in done.stderr and done.stdout == ""
