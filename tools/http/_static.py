"""Static files under a path prefix: no way out of the directory, no dotfiles."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.responses import FileResponse, Response

from microcore.tooling import Owner, RegistrationError

from ._errors import HttpError, NotFound

__all__ = ("StaticMount", "normalize_prefix")


def normalize_prefix(path: str) -> str:
    """``/assets/`` -> ``/assets``; ``/`` -> ``""`` (everything)."""
    if not path.startswith("/"):
        raise RegistrationError(f"static path {path!r} must start with '/', e.g. '/assets'")
    if "{" in path:
        raise RegistrationError(f"static path {path!r} cannot have parameters")
    return path.rstrip("/")


class StaticMount:
    """Serves files of ``directory`` under ``prefix`` (``index.html`` for a folder).

    A path segment that starts with a dot (``.env``, ``..``) is not found, and so
    is anything whose real path (after symlinks) is outside ``directory``.
    """

    __slots__ = ("directory", "owner", "prefix")

    def __init__(self, prefix: str, directory: str | os.PathLike[str], owner: Owner) -> None:
        root = Path(directory).resolve()
        if not root.is_dir():
            raise RegistrationError(
                f"mount_static({prefix!r}, {str(directory)!r}): {root} is not a directory; "
                "pass an existing folder, e.g. Path(__file__).parent / 'static'"
            )
        self.prefix = normalize_prefix(prefix)
        self.directory = root
        self.owner = owner

    async def respond(self, scope: Any, rest: str) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            raise HttpError(
                405,
                "method_not_allowed",
                f"{scope['method']} is not allowed on static files; allowed methods: GET, HEAD",
                headers={"allow": "GET, HEAD"},
            )
        found = await anyio.to_thread.run_sync(self._find, rest)
        if found is None:
            raise NotFound(f"no file at {scope['path']}")
        return FileResponse(found)

    def _find(self, rest: str) -> Path | None:
        parts = [p for p in rest.split("/") if p]
        if any(p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
            return None
        try:
            candidate = self._inside(self.directory.joinpath(*parts))
            if candidate is not None and candidate.is_dir():
                # a folder serves its index.html, which is itself checked: it may be a symlink
                candidate = self._inside(candidate / "index.html")
            return candidate if candidate is not None and candidate.is_file() else None
        except (OSError, ValueError):  # a name the filesystem refuses (too long...) is no file
            return None

    def _inside(self, path: Path) -> Path | None:
        """``path`` with symlinks resolved, or None when that leaves the directory."""
        real = path.resolve()
        if real != self.directory and self.directory not in real.parents:
            return None
        return real
