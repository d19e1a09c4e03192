"""``GET /openapi.json`` and ``GET /docs``: interactive docs whose assets the app serves itself.

Swagger UI comes from the ``swagger-ui-bundle-v2`` package when it is installed;
otherwise ``/docs`` is a small explorer shipped in ``docs_assets/``. Either way
no file is fetched from a CDN, so the docs work on a machine with no internet.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from starlette.responses import HTMLResponse, Response

from ._endpoint import Endpoint
from ._handle import Http
from ._openapi import build_openapi
from ._registry import Registry, Snapshot
from ._routing import CompiledPath

__all__ = ("ApiDocs", "swagger_ui_dir")

ASSETS = Path(__file__).parent / "docs_assets"


def swagger_ui_dir() -> Path | None:
    """The folder of Swagger UI's distribution files, if the package is installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(str(swagger_ui_path))
    return path if (path / "swagger-ui-bundle.js").is_file() else None


class ApiDocs:
    """Serves the OpenAPI document (cached per route table) and the docs page."""

    def __init__(
        self,
        registry: Registry,
        current: Callable[[], Snapshot],
        *,
        title: str,
        version: str = "0.1.0",
        prefix: str = "/docs",
        openapi_url: str = "/openapi.json",
        exclude_owner: Any = None,
    ) -> None:
        self._registry = registry
        self._current = current
        self.title = title
        self.version = version
        self.prefix = prefix
        self.openapi_url = openapi_url
        self._exclude = exclude_owner
        self._cache: tuple[Snapshot | None, bytes] = (None, b"")
        self.swagger = swagger_ui_dir()
        template = (ASSETS / ("index.html" if self.swagger else "mini.html")).read_text()
        self._page = (
            template.replace("{title}", _escape(title))
            .replace("{prefix}", prefix)
            .replace("{openapi_url}", openapi_url)
        )

    def register(self, handle: Http) -> None:
        handle.add_endpoint(self.openapi_url, "GET", self.openapi_json, tags=["docs"])
        handle.add_endpoint(self.prefix, "GET", self.page, tags=["docs"])
        handle.mount_static(f"{self.prefix}/static", ASSETS)
        if self.swagger is not None:
            handle.mount_static(f"{self.prefix}/assets", self.swagger)

    def document(self) -> dict[str, Any]:
        """The OpenAPI document of every endpoint that serves now (the docs' own excluded)."""
        routes: list[tuple[CompiledPath, Endpoint]] = [
            (entry.compiled, entry.target)
            for entry in self._registry.entries()
            if entry.kind in ("route", "sse")
            and entry.owner.active
            and entry.owner is not self._exclude
            and entry.compiled is not None
        ]
        return build_openapi(routes, title=self.title, version=self.version)

    def encoded(self, snapshot: Snapshot) -> bytes:
        cached_for, body = self._cache
        if cached_for is not snapshot:
            body = msgspec.json.encode(self.document())
            self._cache = (snapshot, body)
        return body

    async def openapi_json(self, data: Any, context: Any) -> Response:
        """The OpenAPI 3.1 document of this API."""
        return Response(self.encoded(self._current()), media_type="application/json")

    async def page(self, data: Any, context: Any) -> Response:
        """Interactive API docs (served offline)."""
        return HTMLResponse(self._page)


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
