"""Each room imports only what its ``__init__`` docstring (and docs/design.md, Rooms) says it may."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("edge", "aggregates", "actors", "actors.system", "backbone", "projections", "api", "perf")
NEVER = {
    "edge": {"aggregates", "actors", "actors.system", "backbone", "projections", "api", "perf"},
    "aggregates": {"edge", "actors", "actors.system", "backbone", "projections", "api", "perf"},
    "actors": {"actors.system", "backbone", "projections", "api", "perf"},
    "backbone": {"actors", "actors.system", "projections", "api", "perf"},
    "projections": {"actors", "actors.system", "api", "perf"},
    "api": {"actors", "actors.system", "aggregates", "perf"},
    "actors.system": {"perf"},
    "perf": set(),
}


def _room_of(module: str) -> str | None:
    if module == "actors.system" or module.startswith("actors.system."):
        return "actors.system"
    top = module.split(".", 1)[0]
    return top if top in ROOMS else None


def _files(room: str) -> list[Path]:
    folder = ROOT.joinpath(*room.split("."))
    files = sorted(folder.rglob("*.py"))
    if room == "actors":  # actors.system is a room of its own
        files = [f for f in files if "system" not in f.relative_to(folder).parts[:1]]
    return files


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("room", ROOMS)
def test_a_room_never_imports_what_it_must_not(room: str) -> None:
    broken = sorted(
        f"{path.relative_to(ROOT)} imports {module}"
        for path in _files(room)
        for module in _imports(path)
        if _room_of(module) in NEVER[room] and _room_of(module) != room
    )
    assert not broken, f"{room} must never import {sorted(NEVER[room])}:\n" + "\n".join(broken)


@pytest.mark.parametrize("room", ROOMS)
def test_a_room_says_what_it_is(room: str) -> None:
    doc = importlib.import_module(room).__doc__ or ""
    assert 5 <= len(doc.strip().splitlines()) <= 14, f"{room}/__init__.py: say what it owns and may import"
    assert "import" in doc
