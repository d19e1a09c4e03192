"""Default security headers: nosniff and DENY on every response unless the handler says else."""

from __future__ import annotations

from .conftest import Serve

PAGES = {
    "domains/site/static/hello.txt": "hello",
    "domains/site/plugins/pages_plugin.py": """
    from pathlib import Path
    from starlette.responses import HTMLResponse
    from microcore import Plugin

    class PagesPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/plain", "GET", self.plain)
            self.http.add_endpoint("/framed", "GET", self.framed)
            self.http.add_endpoint("/page", "GET", self.page)
            self.http.add_endpoint("/empty", "DELETE", self.empty)
            self.http.mount_static("/static", Path(__file__).parent.parent / "static")

        async def plain(self, data, context):
            return {"ok": True}

        async def framed(self, data, context):
            context.set_header("X-Frame-Options", "SAMEORIGIN")
            return {"ok": True}

        async def page(self, data, context):
            return HTMLResponse("<p>hi</p>", headers={"x-content-type-options": "custom"})

        async def empty(self, data, context):
            return None
    """,
}
DEFAULTS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY"}


async def test_headers_are_on_every_kind_of_response(serve: Serve) -> None:
    """JSON, 204, errors, static files, the OpenAPI document and the docs page all carry
    ``X-Content-Type-Options: nosniff`` and ``X-Frame-Options: DENY``, once."""
    served = await serve(PAGES)
    client = served.client
    responses = [
        await client.get("/plain"),
        await client.delete("/empty"),
        await client.get("/nowhere"),
        await client.post("/plain"),
        await client.get("/static/hello.txt"),
        await client.get("/openapi.json"),
        await client.get("/docs"),
    ]
    for response in responses:
        for name, value in DEFAULTS.items():
            assert response.headers.get_list(name) == [value], (response.url, name)


async def test_headers_the_handler_sets_win(serve: Serve) -> None:
    """A handler's own X-Frame-Options or X-Content-Type-Options replaces the default; the
    other default stays."""
    served = await serve(PAGES)
    framed = await served.client.get("/framed")
    assert framed.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
    assert framed.headers["x-content-type-options"] == "nosniff"
    page = await served.client.get("/page")
    assert page.headers.get_list("x-content-type-options") == ["custom"]
    assert page.headers["x-frame-options"] == "DENY"
