"""docker-compose.yml read the way ``docker compose`` reads it, for structural tests.

There is no Docker engine here: this loads ``.env`` and the compose file, substitutes
``${VAR}``, ``${VAR:-default}`` and friends as compose does, and answers questions about
services, their ports, dependencies and environments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a compose ``.env`` file (comments, blanks and quotes as compose)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise ValueError(f"{path.name}:{number}: not KEY=VALUE: {raw!r}")
        value = value.strip()
        if value[:1] in "\"'" and value[-1:] == value[:1] and len(value) > 1:
            value = value[1:-1]
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
        values[key.strip()] = value
    return values


@dataclass
class Interpolation:
    """Compose's variable substitution; remembers the variables it found unset."""

    env: dict[str, str]
    missing: set[str] = field(default_factory=set)

    def text(self, value: str) -> str:
        """``value`` with every ``$VAR`` / ``${VAR...}`` replaced; ``$$`` is a literal ``$``."""

        def one(match: re.Match[str]) -> str:
            if match["escaped"]:
                return "$"
            name = match["braced"] or match["bare"]
            op, arg = match["op"], match["arg"] or ""
            present = name in self.env
            nonempty = bool(self.env.get(name))
            if op in (":-", "-"):
                use_default = not nonempty if op == ":-" else not present
                return self.text(arg) if use_default else self.env[name]
            if op in (":?", "?"):
                if (op == ":?" and not nonempty) or not present:
                    raise ValueError(f"required variable {name} is unset: {arg}")
                return self.env[name]
            if op in (":+", "+"):
                return self.text(arg) if (nonempty if op == ":+" else present) else ""
            if not present:
                self.missing.add(name)
            return self.env.get(name, "")

        return _VAR.sub(one, value)

    def tree(self, node: Any) -> Any:
        """Every string value of a parsed YAML tree substituted (keys are left alone)."""
        if isinstance(node, str):
            return self.text(node)
        if isinstance(node, list):
            return [self.tree(item) for item in node]
        if isinstance(node, dict):
            return {key: self.tree(value) for key, value in node.items()}
        return node


@dataclass(frozen=True)
class Port:
    """One published port: ``ip:host:container`` (host empty when not published)."""

    ip: str
    host: int | None
    container: int


def parse_port(entry: Any) -> Port:
    """A ``ports:`` entry in short (``"127.0.0.1:8080:80"``) or long (mapping) syntax."""
    if isinstance(entry, dict):
        published = entry.get("published")
        return Port(
            str(entry.get("host_ip", "0.0.0.0")),
            int(published) if published not in (None, "") else None,
            int(entry["target"]),
        )
    text = str(entry).split("/")[0]
    parts = text.rsplit(":", 2)
    if len(parts) == 1:
        return Port("0.0.0.0", None, int(parts[0]))
    if len(parts) == 2:
        return Port("0.0.0.0", int(parts[0]), int(parts[1]))
    return Port(parts[0], int(parts[1]), int(parts[2]))


@dataclass
class Compose:
    """The compose file as ``docker compose config`` would see it (after substitution)."""

    env: dict[str, str]
    raw: dict[str, Any]
    services: dict[str, dict[str, Any]]
    missing: set[str]

    @classmethod
    def load(cls, root: Path = ROOT, overrides: dict[str, str] | None = None) -> Compose:
        """Read ``root/.env`` (with ``overrides``, as an operator's edits) and the compose file."""
        env = {**read_env_file(root / ".env"), **(overrides or {})}
        raw = yaml.safe_load((root / "docker-compose.yml").read_text(encoding="utf-8"))
        interpolation = Interpolation(env)
        services = interpolation.tree(raw["services"])
        return cls(env, raw, services, interpolation.missing)

    def environment(self, service: str) -> dict[str, str]:
        """A service's environment as its container sees it."""
        found = self.services[service].get("environment") or {}
        if isinstance(found, list):
            found = dict(item.split("=", 1) if "=" in item else (item, "") for item in found)
        return {str(k): "" if v is None else str(v) for k, v in found.items()}

    def ports(self, service: str) -> list[Port]:
        """The ports a service publishes."""
        return [parse_port(entry) for entry in self.services[service].get("ports") or []]

    def depends_on(self, service: str) -> dict[str, str]:
        """Each service this one waits for, with the condition (short syntax: started)."""
        found = self.services[service].get("depends_on") or {}
        if isinstance(found, list):
            return {name: "service_started" for name in found}
        return {
            name: (spec or {}).get("condition", "service_started") for name, spec in found.items()
        }

    def command(self, service: str) -> list[str]:
        """The service's command as a list (a string is split on spaces, as compose does)."""
        found = self.services[service].get("command") or []
        return found.split() if isinstance(found, str) else [str(part) for part in found]

    def bind_mounts(self, service: str) -> list[tuple[str, str]]:
        """``(host path, container path)`` of each bind mount (named volumes left out)."""
        mounts = []
        for entry in self.services[service].get("volumes") or []:
            source, _, rest = str(entry).partition(":")
            if source.startswith((".", "/")):
                mounts.append((source, rest.split(":")[0]))
        return mounts
