"""The kernel stays blind: its modules import no web framework, database driver or tool."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import microcore

KERNEL = Path(microcore.__file__).parent
FORBIDDEN = ("starlette", "aiosqlite", "asyncpg", "nats", "redis", "uvicorn", "tools", "domains")


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", sorted(KERNEL.glob("*.py")), ids=lambda p: p.name)
def test_kernel_module_imports_nothing_technical(path):
    """No kernel module imports starlette, a database or bus driver, a tool or a domain."""
    bad = sorted(m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN)
    assert bad == [], f"{path.name} imports {bad}"
