"""Handlers raise NotFound and friends: the status and the one error shape, seen by middleware."""

from __future__ import annotations

import pytest

from tools.http.http_tool import Exchange

from .conftest import Serve

RAISING = {
    "domains/shop/plugins/raising_plugin.py": """
    from __future__ import annotations

    from typing import Any

    from microcore import Plugin
    from tools.http import (
        BadRequest, Conflict, Context, Forbidden, Http, HttpError, NotFound, Unauthorized,
    )

    ERRORS = {
        "bad_request": BadRequest, "unauthorized": Unauthorized, "forbidden": Forbidden,
        "not_found": NotFound, "conflict": Conflict,
    }

    class RaisingPlugin(Plugin):
        def __init__(self, http: Http) -> None:
            self.http = http
            self.seen: list[int] = []

        async def on_boot(self) -> None:
            self.http.add_middleware(self.watch)
            self.http.add_endpoint("/products/{product_id:int}", "GET", self.show)
            self.http.add_endpoint("/raise/{code}", "GET", self.fail)
            self.http.add_endpoint("/teapot", "GET", self.teapot)
            self.http.add_endpoint("/seen", "GET", self.report)

        async def watch(self, context: Context, call_next: Any) -> Any:
            response = await call_next()
            if context.path != "/seen":
                self.seen.append(response.status_code)
                response.headers["x-seen-by"] = "watch"
            return response

        async def show(self, data: dict[str, Any], context: Context) -> None:
            context.set_header("x-dropped", "yes")
            raise NotFound(f"product {data['product_id']} does not exist")

        async def fail(self, data: dict[str, Any], context: Context) -> None:
            raise ERRORS[data["code"]](f"raised {data['code']}", path="$.code")

        async def teapot(self, data: Any, context: Context) -> None:
            raise HttpError(418, "teapot", "short and stout", headers={"x-brew": "no"})

        async def report(self, data: Any, context: Context) -> list[int]:
            return self.seen
    """,
}


async def test_raise_not_found_answers_404_in_the_error_shape(serve: Serve) -> None:
    """``raise NotFound(...)`` answers 404 with code not_found and the message, nothing else."""
    served = await serve(RAISING)
    response = await served.client.get("/products/7")
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "error": {"code": "not_found", "message": "product 7 does not exist"},
    }
    assert "x-dropped" not in response.headers


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("bad_request", 400),
        ("unauthorized", 401),
        ("forbidden", 403),
        ("not_found", 404),
        ("conflict", 409),
    ],
)
async def test_raise_each_error_class_answers_its_status(
    serve: Serve, code: str, status: int
) -> None:
    """Each HttpError subclass answers its status, its code, the message and the path."""
    served = await serve(RAISING)
    response = await served.client.get(f"/raise/{code}")
    assert response.status_code == status
    assert response.json() == {
        "success": False,
        "error": {"code": code, "message": f"raised {code}", "path": "$.code"},
    }


async def test_raise_http_error_answers_any_status_with_headers(serve: Serve) -> None:
    """HttpError(status, code, message) answers that status and adds its headers."""
    served = await serve(RAISING)
    response = await served.client.get("/teapot")
    assert response.status_code == 418
    assert response.headers["x-brew"] == "no"
    assert response.json()["error"] == {"code": "teapot", "message": "short and stout"}


async def test_raise_middleware_and_observers_see_the_mapped_status(serve: Serve) -> None:
    """Middleware gets the 404 response from call_next, and observers count it, like any error."""
    served = await serve(RAISING)
    exchanges: list[Exchange] = []
    remove = served.http.observe(exchanges.append)
    response = await served.client.get("/products/7")
    remove()
    assert response.headers["x-seen-by"] == "watch"
    assert (await served.client.get("/seen")).json() == [404]
    assert [(e.route, e.status, e.owner) for e in exchanges] == [
        ("/products/{product_id:int}", 404, "shop.RaisingPlugin")
    ]
