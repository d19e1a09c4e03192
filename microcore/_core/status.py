"""The kernel's state as plain data: the body of ``/system/status``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .discovery import ErrorInfo

if TYPE_CHECKING:
    from .kernel import Kernel

__all__ = ("relative", "render_error", "render_status")


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


def render_status(kernel: Kernel) -> dict[str, Any]:
    """Tools and plugins with status, error, file and registrations; boot and reload times."""
    root = kernel.root
    plugins: dict[str, Any] = {}
    for identity in sorted(kernel.plugins):
        record = kernel.plugins[identity]
        kinds: dict[str, list[str]] = {"routes": [], "subscriptions": []}
        for registration in record.owner.registrations:
            kinds.setdefault(registration.kind + "s", []).append(registration.label)
        plugins[identity] = {
            "status": record.status,
            "error": render_error(root, record.error),
            "reload_error": render_error(root, kernel.reload_errors.get(record.file.resolve())),
            "file": relative(root, record.file),
            "domain": record.domain,
            "tools": list(record.tools),
            **kinds,
            "loaded_at": record.loaded_at,
        }
    return {
        "tools": {
            name: {
                "status": r.status,
                "error": render_error(root, r.error),
                "file": relative(root, r.file),
            }
            for name, r in sorted(kernel.tools.items())
        },
        "plugins": plugins,
        "booted_at": kernel.booted_at,
        "boot_ms": None if kernel.boot_seconds is None else round(kernel.boot_seconds * 1000, 1),
        "reloaded_at": kernel.reloaded_at,
        "reload_ms": kernel.reload_ms,
        "reload_errors": {
            relative(root, path): render_error(root, error)
            for path, error in sorted(kernel.reload_errors.items())
        },
    }
