"""Every graphrunner module imports first, in a fresh interpreter: no import cycle can return.

A cycle (graph -> guardrails -> _types -> graph once needed a lazy ``__getattr__``) only
breaks when a particular module is the first one imported, which the rest of the suite never
varies: it imports the package through conftest. So a child interpreter imports each module
as the very first graphrunner import, then every other module.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = [
    "graphrunner",
    "graphrunner.activities",
    "graphrunner.client",
    "graphrunner.errors",
    "graphrunner.graph",
    "graphrunner.guardrails",
    "graphrunner.stores",
    "graphrunner.worker",
    "graphrunner.workflows",
]

# Imports ``first``, then every graphrunner module; then, for every module of the package
# (private ones too), forgets all graphrunner modules and imports that one first. Third-party
# modules stay loaded, so a round costs milliseconds.
CHILD = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    first = sys.argv[1]
    importlib.import_module(first)
    import graphrunner
    names = sorted(
        info.name
        for info in pkgutil.walk_packages(graphrunner.__path__, "graphrunner.")
        if not info.name.endswith("__main__")
    )
    for name in names:
        importlib.import_module(name)
    for module in sorted(set(sys.modules)):  # every public export resolves
        exported = getattr(sys.modules[module], "__all__", ())
        if module.startswith("graphrunner") and not module.rpartition(".")[2].startswith("_"):
            for attribute in exported:
                getattr(sys.modules[module], attribute)
    if first == "graphrunner":
        for name in names:
            for loaded in [m for m in sys.modules if m.split(".")[0] == "graphrunner"]:
                del sys.modules[loaded]
            importlib.import_module(name)
    print(len(names))
    """
)


@pytest.mark.parametrize("first", PUBLIC)
def test_each_public_module_imports_first_in_a_fresh_interpreter(first: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, first],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) > 30  # it did walk the package
