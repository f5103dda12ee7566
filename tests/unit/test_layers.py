"""The house plan of docs/architecture.md, enforced: every import between Concord's folders goes down the
layer order, and no two folders depend on each other, however indirectly.

Every import counts, also those under `if TYPE_CHECKING:` and inside functions: a type-only import
upwards is still a folder that cannot be understood without the one above it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[2]

#: The engine's layers, bottom first: a folder may import the folders before it, never one after it.
ORDER: Final = ("core", "codecs", "tables", "drift", "connectors", "agents", "app")
#: Beside the line: the sandbox (the oracle) and the local infrastructure use `core` at most; `bench`
#: measures everything, so it sits on top of it all. `app` wires the CLI, so it may start both tools.
SIDE: Final[Mapping[str, frozenset[str]]] = {
    "sandbox": frozenset({"core"}),
    "infra": frozenset({"core"}),
    "bench": frozenset({*ORDER, "sandbox", "infra"}),
}
APP_TOOLS: Final = frozenset({"sandbox", "infra"})


def allowed(folder: str) -> frozenset[str]:
    """The folders `folder` may import."""
    if folder in SIDE:
        return SIDE[folder]
    below = frozenset(ORDER[: ORDER.index(folder)])
    return below | APP_TOOLS if folder == "app" else below


FOLDERS: Final = (*ORDER, *SIDE)


def concord_imports(source: str) -> Iterable[tuple[int, str]]:
    """(line, folder) of every `concord.<folder>` a module's source imports, wherever the import stands."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "concord" else [f"concord.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "concord" and len(parts) > 1:
                yield node.lineno, parts[1]


def edges(root: Path = ROOT) -> dict[tuple[str, str], list[str]]:
    """(from folder, to folder) -> the places (`path:line`) of those imports, for every folder pair."""
    found: dict[tuple[str, str], list[str]] = {}
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            for line, target in concord_imports(path.read_text()):
                if target != folder:
                    found.setdefault((folder, target), []).append(f"{path.relative_to(root)}:{line}")
    return found


def violations(found: Mapping[tuple[str, str], list[str]]) -> list[str]:
    """Every import that goes against the layer order, or into a folder that is not a layer."""
    out = []
    for (source, target), places in sorted(found.items()):
        if target not in FOLDERS:
            out.append(f"{source} -> {target} (not a layer of docs/architecture.md): {', '.join(places)}")
        elif target not in allowed(source):
            out.append(f"{source} -> {target} goes against the layer order: {', '.join(places)}")
    return out


def cycles(found: Mapping[tuple[str, str], list[str]]) -> list[list[str]]:
    """The groups of folders that reach each other through imports (strongly connected, size > 1)."""
    graph: dict[str, set[str]] = {}
    for source, target in found:
        graph.setdefault(source, set()).add(target)
    groups = []
    seen: set[str] = set()
    for start in sorted(graph):
        if start in seen:
            continue
        reach = _reachable(graph, start)
        group = sorted(f for f in reach if start in _reachable(graph, f))
        seen.update(group)
        if len(group) > 1:
            groups.append(group)
    return groups


def _reachable(graph: Mapping[str, set[str]], start: str) -> set[str]:
    stack, reached = [start], {start}
    while stack:
        for target in graph.get(stack.pop(), ()):
            if target not in reached:
                reached.add(target)
                stack.append(target)
    return reached


def test_every_import_between_folders_goes_down_the_layer_order() -> None:
    assert violations(edges()) == []


def test_no_two_folders_depend_on_each_other() -> None:
    assert cycles(edges()) == []


def test_every_folder_of_the_package_is_a_layer() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"concord", "tests"}
    assert packages == set(FOLDERS)


def test_the_order_is_the_one_docs_architecture_states() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    assert " → ".join(ORDER) in text


def _synthetic(tmp_path: Path, files: Mapping[str, str]) -> dict[tuple[str, str], list[str]]:
    for folder in FOLDERS:
        (tmp_path / folder).mkdir()
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    return edges(tmp_path)


def test_a_new_upward_import_is_caught(tmp_path: Path) -> None:
    found = _synthetic(tmp_path, {
        "tables/state.py": "from concord.drift.finding import Observation\n",
        "drift/rule.py": "from concord.tables.state import CustomerState\n",
        "agents/state.py": "if TYPE_CHECKING:\n    from concord.app.factory import X\n",
        "sandbox/emit.py": "def sign():\n    from concord.app import signatures\n",
        "codecs/ok.py": "from concord.core import messages\nimport concord.core.currency\n",
    })
    assert violations(found) == [
        "agents -> app goes against the layer order: agents/state.py:2",
        "sandbox -> app goes against the layer order: sandbox/emit.py:2",
        "tables -> drift goes against the layer order: tables/state.py:1",
    ]
    assert cycles(found) == [["drift", "tables"]]


@pytest.mark.parametrize("source, expected", [
    ("from concord import app\n", ["app"]),
    ("import concord.connectors.ledger as ledger\n", ["connectors"]),
    ("from . import sibling\nfrom concord import __version__\nimport os\n", ["__version__"]),
])
def test_every_form_of_import_is_read(source: str, expected: list[str]) -> None:
    assert [folder for _, folder in concord_imports(source)] == expected
