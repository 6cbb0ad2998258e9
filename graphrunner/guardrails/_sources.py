"""Where a worker's guardrail policies come from: a global file and a tenant directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from graphrunner.errors import PolicyError
from graphrunner.guardrails._policy import Policy, load_policy
from graphrunner.guardrails._wire import PolicySnapshot

__all__ = ["PolicySource"]

_TENANT_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, kw_only=True)
class PolicySource:
    """The worker's policy layers, loaded (and so validated) once, when the worker starts.

    Attributes:
        global_policy: Enforced on every lifetime.
        tenant_policies: Per-tenant overrides, by tenant name.
        global_file: The file the global policy was read from.
        tenant_files: The file each tenant's policy was read from.
    """

    global_policy: Policy | None = None
    tenant_policies: dict[str, Policy] = field(default_factory=dict)
    global_file: str | None = None
    tenant_files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, global_file: Path | None = None, tenant_dir: Path | None = None) -> PolicySource:
        """Read the global policy file and every ``<tenant>.yaml`` in ``tenant_dir``.

        Raises:
            PolicyError: A file is unreadable or invalid (with file, line and column), or the
                tenant directory does not exist.
        """
        files: dict[str, str] = {}
        global_policy = load_policy(global_file) if global_file is not None else None
        tenants: dict[str, Policy] = {}
        if tenant_dir is not None:
            if not tenant_dir.is_dir():
                raise PolicyError(
                    "the tenant policy directory does not exist", file=str(tenant_dir)
                )
            for path in sorted(tenant_dir.iterdir()):
                if path.suffix in _TENANT_SUFFIXES and path.is_file():
                    tenants[path.stem] = load_policy(path)
                    files[path.stem] = str(path)
        return cls(
            global_policy=global_policy,
            tenant_policies=tenants,
            global_file=str(global_file) if global_file is not None else None,
            tenant_files=files,
        )

    def snapshot(self, tenant: str, *, ledger: bool) -> PolicySnapshot:
        """The layers that apply to ``tenant``, as pinned into a lifetime's history."""
        tenant_policy = self.tenant_policies.get(tenant)
        sources = [f for f in (self.global_file, self.tenant_files.get(tenant)) if f]
        return PolicySnapshot(
            global_policy=self.global_policy,
            tenant_policy=tenant_policy,
            ledger=ledger,
            sources=sources,
        )
