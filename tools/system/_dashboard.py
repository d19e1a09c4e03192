"""The dashboard's files: one HTML page, its script and style sheet, all served by the app.

The files live in ``dashboard_assets/`` beside this module (plain HTML, CSS and
JavaScript, no build step, nothing fetched from elsewhere) and are read once at
set-up. ``login.html`` is what a browser gets instead of the page when the
``system_token`` cookie is missing or wrong outside development.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import Response

__all__ = ("ASSETS", "Dashboard")

ASSETS = Path(__file__).resolve().parent / "dashboard_assets"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
PAGE = "index.html"
LOGIN = "login.html"


class Dashboard:
    """The asset files in memory, answered by name."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, str]] = {}

    def load(self, folder: Path = ASSETS) -> None:
        """Read every asset (blocking: call it in a worker thread)."""
        self._files = {
            path.name: (path.read_bytes(), _TYPES[path.suffix])
            for path in sorted(folder.iterdir())
            if path.suffix in _TYPES
        }

    def names(self) -> list[str]:
        return sorted(self._files)

    def response(self, name: str, status: int = 200) -> Response | None:
        """The file ``name`` as a response, or None when there is no such asset."""
        found = self._files.get(name)
        if found is None:
            return None
        body, media_type = found
        return Response(
            body,
            status_code=status,
            media_type=media_type,
            headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"},
        )

    def page(self) -> Response:
        response = self.response(PAGE)
        if response is None:  # pragma: no cover - the file ships with the tool
            raise FileNotFoundError(f"{ASSETS / PAGE} is missing")
        return response

    def login(self) -> Response:
        response = self.response(LOGIN, 401)
        if response is None:  # pragma: no cover - the file ships with the tool
            raise FileNotFoundError(f"{ASSETS / LOGIN} is missing")
        response.headers["www-authenticate"] = 'Bearer realm="microcore system"'
        return response
