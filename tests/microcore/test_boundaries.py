"""The architecture holds: a blind core, tooling above it, no import cycles anywhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import microcore

PACKAGE = Path(microcore.__file__).parent
REPO = PACKAGE.parent
CORE = PACKAGE / "_core"
FORBIDDEN = ("starlette", "aiosqlite", "asyncpg", "nats", "redis", "uvicorn", "tools", "domains")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (TYPE_CHECKING blocks and
    function bodies included), relative imports resolved; ``from a import b`` counts as
    ``a`` and, when ``a.b`` is a module, as ``a.b`` too."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _graph(*folders: Path) -> dict[str, set[str]]:
    files = sorted(p for folder in folders for p in folder.rglob("*.py"))
    names = {_module_name(p) for p in files}
    return {_module_name(p): {m for m in _imports(p) if m in names} for p in files}


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_nothing_technical(path: Path) -> None:
    """No core module imports starlette, a database or bus driver, a tool or a domain."""
    bad = sorted(m for m in _imports(path) if m.split(".")[0] in FORBIDDEN)
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_only_the_core(path: Path) -> None:
    """The run-time core never imports developer tooling, the facade or the tool API."""
    graph = _graph(PACKAGE)
    outside = sorted(m for m in graph[_module_name(path)] if not m.startswith("microcore._core"))
    assert outside == [], f"{path.name} imports {outside}"


def test_tools_see_the_kernel_only_through_public_modules() -> None:
    """Tools import microcore's public modules (microcore, .tooling, .events), never a
    private one and never the Kernel class."""
    bad = sorted(
        f"{_module_name(path)} imports {module}"
        for path in sorted((REPO / "tools").rglob("*.py"))
        for module in _imports(path)
        if (module.startswith("microcore.") and module.split(".")[1].startswith("_"))
        or module == "microcore.tooling.Kernel"
    )
    assert bad == []


@pytest.mark.parametrize("folder", ["microcore", "tools"])
def test_no_import_cycles(folder: str) -> None:
    """No module reaches itself through its imports, TYPE_CHECKING and lazy ones included."""
    graph = _graph(REPO / folder)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if dep.startswith(name + "."):
                continue  # a package re-exporting its own modules is not a cycle
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []
