"""Paths and errors as ``/system/status`` and the logs show them: relative to the project."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .discovery import ErrorInfo

__all__ = ("relative", "render_error")


def relative(root: Path, path: Path | str | None) -> str | None:
    """``path`` relative to ``root`` when it lies inside it, else as given."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def render_error(root: Path, error: ErrorInfo | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {
        "type": error.type,
        "message": error.message,
        "file": relative(root, error.file),
        "line": error.line,
    }
