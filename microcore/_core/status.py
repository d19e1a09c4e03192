"""The kernel's state as declared types: the body of ``/system/status``, paths made relative.

Registrations are listed by kind (``"route"``, ``"subscription"``, ``"job"``...): the
kernel does not know what a tool registers, the tool that served it does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from .discovery import ErrorInfo

__all__ = (
    "ErrorView",
    "PluginStatus",
    "SystemStatus",
    "ToolStatus",
    "relative",
    "render_error",
)


class ErrorView(msgspec.Struct, frozen=True):
    """Why a tool, plugin or file failed: exception type, message, file (relative), line."""

    type: str
    message: str
    file: str | None = None
    line: int | None = None


class ToolStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One tool: ``"ok"`` or ``"failed"`` with its error, and its file."""

    status: str
    error: ErrorView | None
    file: str | None


class PluginStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One plugin: status and error, the error of a new version that failed to load while
    this one keeps serving, its file, domain and tools, what it registered by kind; a plugin
    a tool hosts (``Tool.hosted_plugins``) adds what that tool knows of it in ``details``."""

    status: str
    error: ErrorView | None
    reload_error: ErrorView | None
    file: str | None
    domain: str
    tools: list[str]
    registrations: dict[str, list[str]]  # kind -> labels, e.g. {"route": ["GET /products"]}
    loaded_at: float | None
    details: dict[str, Any] = {}  # e.g. a hosted program's {"pid": 4242, "restarts": 1}


class SystemStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Every tool and plugin, boot and reload times, and files whose new version failed."""

    tools: dict[str, ToolStatus]
    plugins: dict[str, PluginStatus]
    booted_at: float | None
    boot_ms: float | None
    reloaded_at: float | None
    reload_ms: float | None
    reload_errors: dict[str, ErrorView]


def relative(root: Path, path: Path | str | None) -> str | None:
    """``path`` relative to ``root`` when it lies inside it, else as given."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def render_error(root: Path, error: ErrorInfo | None) -> ErrorView | None:
    if error is None:
        return None
    return ErrorView(error.type, error.message, relative(root, error.file), error.line)
