"""Issue #14, defects 1-3: no input a client sends answers 500 or logs a traceback."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from microcore.tooling import Owner
from tools.http._endpoint import MAX_DEPTH

from .conftest import Serve, Served

HOSTILE = {
    "domains/shop/plugins/hostile_plugin.py": """
    from __future__ import annotations

    from typing import Any

    import msgspec

    from microcore import Plugin
    from tools.http import Context, Http

    class NewProduct(msgspec.Struct):
        name: str
        price: float

    class Loose(msgspec.Struct):
        name: Any
        price: float

    class HostilePlugin(Plugin):
        def __init__(self, http: Http) -> None:
            self.http = http
            self.calls = 0

        async def on_boot(self) -> None:
            self.http.add_endpoint("/products/{product_id:int}", "GET", self.show)
            self.http.add_endpoint("/products", "POST", self.create, request_model=NewProduct)
            self.http.add_endpoint("/loose", "POST", self.create, request_model=Loose)
            self.http.add_endpoint("/plain", "POST", self.create)
            self.http.add_endpoint("/shops/{shop}/products", "POST", self.create,
                                   request_model=Loose)
            self.http.add_endpoint("/batch", "POST", self.create, request_model=list[Any])
            self.http.add_endpoint("/calls", "GET", self.count)

        async def show(self, data: dict[str, Any], context: Context) -> dict[str, Any]:
            self.calls += 1
            return {"id": data["product_id"]}

        async def create(self, data: Any, context: Context) -> dict[str, Any]:
            self.calls += 1
            return {"success": True}

        async def count(self, data: Any, context: Context) -> dict[str, int]:
            return {"calls": self.calls}
    """,
}


def nested(depth: int) -> bytes:
    """``{"name": [[[...]]], "price": 1}`` with ``depth`` levels in all."""
    return b'{"name":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b',"price":1}'


def assert_error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "error"} and body["success"] is False
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    return message


async def calls(served: Served) -> int:
    count: int = (await served.client.get("/calls")).json()["calls"]
    return count


async def test_hostile_int_path_param_past_int64_answers_404(serve: Serve) -> None:
    """GET /products/9223372036854775808 answers 404 (no such path can exist), never 500."""
    served = await serve(HOSTILE)
    with structlog.testing.capture_logs() as logs:
        response = await served.client.get("/products/9223372036854775808")
        huge = await served.client.get("/products/" + "9" * 400)
    assert "no route matches GET /products/9223372036854775808" in assert_error(
        response, 404, "not_found"
    )
    assert_error(huge, 404, "not_found")
    assert await calls(served) == 0
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []
    assert (await served.client.get("/products/9223372036854775807")).json() == {
        "id": 9223372036854775807
    }


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/products", "?x=1"),  # merged with the query: the decode the issue names
        ("/products", ""),  # straight into the model (msgspec refuses the type first: 422)
        ("/loose", ""),  # straight into a model whose field takes anything
        ("/loose", "?x=1"),
        ("/plain", "?x=1"),  # no model at all
        ("/plain", ""),
        ("/shops/north/products", ""),  # merged with path parameters
        ("/batch", ""),  # a non-Struct model: the body alone
    ],
)
async def test_hostile_json_nested_1000_deep_answers_4xx(
    serve: Serve, path: str, query: str
) -> None:
    """JSON nested ~1,000 levels answers 400 (or 422) in the error shape, logging no traceback."""
    served = await serve(HOSTILE)
    body = nested(1000) if path != "/batch" else b"[" * 1000 + b"]" * 1000
    with structlog.testing.capture_logs() as logs:
        response = await served.client.post(path + query, content=body)
    if path == "/products" and not query:
        assert_error(response, 422, "validation_error")
    else:
        message = assert_error(response, 400, "malformed_json")
        assert f"deeper than {MAX_DEPTH} levels" in message
    assert await calls(served) == 0
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []


async def test_hostile_json_past_the_bound_is_refused_before_the_handler(serve: Serve) -> None:
    """A body msgspec can decode but nested past MAX_DEPTH is refused; one within it is served."""
    served = await serve(HOSTILE)
    too_deep = await served.client.post("/plain?x=1", content=nested(MAX_DEPTH + 1))
    assert_error(too_deep, 400, "malformed_json")
    struct = await served.client.post("/loose", content=nested(MAX_DEPTH + 1))
    assert_error(struct, 400, "malformed_json")
    assert await calls(served) == 0
    assert (await served.client.post("/plain?x=1", content=nested(MAX_DEPTH))).status_code == 200
    assert (await served.client.post("/loose", content=nested(MAX_DEPTH))).status_code == 200
    wide = b'{"name":[' + b",".join([b'{"a":[1]}'] * (MAX_DEPTH * 2)) + b'],"price":1}'
    assert (await served.client.post("/loose", content=wide)).status_code == 200
    assert await calls(served) == 3


async def test_hostile_static_segment_over_255_bytes_answers_404(serve: Serve) -> None:
    """GET /docs/static/<256 x a> answers 404 on every mount_static, never 500."""
    served = await serve(HOSTILE)
    with structlog.testing.capture_logs() as logs:
        docs = await served.client.get("/docs/static/" + "a" * 256)
        deep = await served.client.get("/docs/static/x/" + "é" * 200)  # 400 bytes in UTF-8
    assert_error(docs, 404, "not_found")
    assert_error(deep, 404, "not_found")
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []


async def test_hostile_static_name_the_filesystem_refuses_answers_404(
    serve: Serve, tmp_path: Any
) -> None:
    """Any name the filesystem rejects (too long, a NUL byte) is not found under a plugin mount."""
    served = await serve(HOSTILE)
    owner = Owner("tools.test")
    owner.activate()
    (tmp_path / "ok.txt").write_text("ok")
    served.http.bind(owner).mount_static("/files", tmp_path)
    assert (await served.client.get("/files/ok.txt")).text == "ok"
    assert_error(await served.client.get("/files/" + "b" * 300), 404, "not_found")
    assert_error(await served.client.get("/files/" + "b" * 300 + "/c"), 404, "not_found")
    assert_error(await served.client.get("/files/a%00b"), 404, "not_found")
