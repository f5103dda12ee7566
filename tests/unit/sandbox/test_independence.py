"""The sandbox judges the engine, so it may share only `concord.core` with it (and use itself)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import concord.sandbox

SANDBOX_DIR = Path(concord.sandbox.__file__).parent
ALLOWED = frozenset({"core", "sandbox"})


def _imported_modules(tree: ast.AST, package: str) -> list[str]:
    """Every module an `import` or `from ... import` names, relative ones resolved against `package`."""
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # `from concord import drift` imports the module concord.drift: check the names too.
            modules.append(base)
            modules.extend(f"{base}.{alias.name}" for alias in node.names)
    return modules


def forbidden_imports(source: str, package: str = "concord.sandbox") -> list[str]:
    """The `concord.<x>` modules imported by `source` whose `x` is neither core nor the sandbox itself."""
    found: list[str] = []
    for module in _imported_modules(ast.parse(source), package):
        parts = module.split(".")
        if parts[0] == "concord" and len(parts) > 1 and parts[1] not in ALLOWED and module not in found:
            found.append(module)
    return found


def _sandbox_modules() -> list[Path]:
    return sorted(SANDBOX_DIR.glob("*.py"))


def test_the_sandbox_has_modules_to_check() -> None:
    names = {path.name for path in _sandbox_modules()}
    assert {"injection.py", "emit.py", "salesforce.py", "signing.py"} <= names


@pytest.mark.parametrize("path", _sandbox_modules(), ids=lambda path: path.name)
def test_a_sandbox_module_imports_only_core_from_concord(path: Path) -> None:
    assert forbidden_imports(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "from concord.drift import catalog",
        "import concord.app.signatures",
        "from concord import codecs",
        "def later() -> None:\n    from concord.tables.state import CustomerState\n",
        "from ..agents import commands",
    ],
)
def test_the_check_sees_an_engine_import(source: str) -> None:
    assert forbidden_imports(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "from concord.core import settings",
        "import concord.core.topics",
        "from concord.sandbox.world import World",
        "from . import signing",
        "from ..core.currency import minor_units",
        "import json\nfrom msgspec import Struct",
    ],
)
def test_the_check_lets_core_and_the_sandbox_through(source: str) -> None:
    assert forbidden_imports(source) == []
