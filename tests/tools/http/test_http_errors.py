"""The error contract: one JSON shape for every failure, and the right status for each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import structlog

from .conftest import Serve

ERRORS = {
    "domains/shop/plugins/errors_plugin.py": """
    from typing import Annotated
    import msgspec
    from microcore import Plugin, RequestTimeout, NoResponder, MicroCoreError

    class NewProduct(msgspec.Struct):
        name: Annotated[str, msgspec.Meta(min_length=1)]
        price: Annotated[float, msgspec.Meta(gt=0)]

    class Paged(msgspec.Struct):
        page: Annotated[int, msgspec.Meta(ge=1)] = 1

    class Conflict(MicroCoreError):
        code = "conflict"
        http_status = 409

    class Quiet(MicroCoreError):
        pass

    class ErrorsPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/products", "POST", self.create, request_model=NewProduct)
            self.http.add_endpoint("/pages", "GET", self.pages, request_model=Paged)
            self.http.add_endpoint("/echo", "POST", self.echo)
            self.http.add_endpoint("/timeout", "GET", self.timeout)
            self.http.add_endpoint("/no-responder", "GET", self.no_responder)
            self.http.add_endpoint("/conflict", "GET", self.conflict)
            self.http.add_endpoint("/boom", "GET", self.boom)
            self.http.add_endpoint("/quiet", "GET", self.quiet)
            self.http.add_endpoint("/unencodable", "GET", self.unencodable)

        async def create(self, data, context):
            return {"success": True}

        async def pages(self, data, context):
            return {"page": data.page}

        async def echo(self, data, context):
            return data

        async def timeout(self, data, context):
            raise RequestTimeout("no reply to 'price.quote' within 5.0 s")

        async def no_responder(self, data, context):
            raise NoResponder("nobody answers 'price.quote'")

        async def conflict(self, data, context):
            raise Conflict("product 'Pen' already exists")

        async def boom(self, data, context):
            raise RuntimeError("secret database password in traceback")

        async def quiet(self, data, context):
            raise Quiet("a MicroCoreError without http_status")

        async def unencodable(self, data, context):
            return {"when": object()}
    """
}


def assert_error_shape(body: dict[str, Any], code: str) -> dict[str, Any]:
    assert body["success"] is False
    assert set(body) == {"success", "error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert set(body["error"]) <= {"code", "message", "path", "id"}
    error: dict[str, Any] = body["error"]
    return error


async def test_error_malformed_json_answers_400(serve: Serve) -> None:
    """A body that is not JSON answers 400 malformed_json."""
    served = await serve(ERRORS)
    response = await served.client.post(
        "/products", content=b'{"name": "Pen",', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert_error_shape(response.json(), "malformed_json")


async def test_error_malformed_json_without_model_answers_400(serve: Serve) -> None:
    """Malformed JSON is refused with 400 also when the endpoint has no model."""
    served = await serve(ERRORS)
    response = await served.client.post("/echo", content=b"[1,")
    assert response.status_code == 400
    assert_error_shape(response.json(), "malformed_json")


async def test_error_validation_answers_422_naming_the_path(serve: Serve) -> None:
    """A field of the wrong type answers 422 with msgspec's message and the field path."""
    served = await serve(ERRORS)
    response = await served.client.post("/products", json={"name": "Pen", "price": "cheap"})
    assert response.status_code == 422
    assert response.json() == {
        "success": False,
        "error": {
            "code": "validation_error",
            "message": "Expected `float`, got `str` - at `$.price`",
            "path": "$.price",
        },
    }


async def test_error_constraint_violation_answers_422(serve: Serve) -> None:
    """A value outside the model's constraints answers 422 naming the field."""
    served = await serve(ERRORS)
    response = await served.client.post("/products", json={"name": "Pen", "price": -1})
    assert response.status_code == 422
    error = assert_error_shape(response.json(), "validation_error")
    assert error["path"] == "$.price"
    assert "Expected `float` > 0.0" in error["message"]


async def test_error_missing_field_answers_422_naming_it(serve: Serve) -> None:
    """A missing required field answers 422 whose path is that field."""
    served = await serve(ERRORS)
    response = await served.client.post("/products", json={"name": "Pen"})
    assert response.status_code == 422
    error = assert_error_shape(response.json(), "validation_error")
    assert error["path"] == "$.price"
    assert "missing required field `price`" in error["message"]


async def test_error_bad_query_param_answers_422_naming_it(serve: Serve) -> None:
    """A query string that does not convert to the field type answers 422 at $.<name>."""
    served = await serve(ERRORS)
    for query, reason in (("page=abc", "Expected `int`"), ("page=0", ">= 1")):
        response = await served.client.get(f"/pages?{query}")
        assert response.status_code == 422
        error = assert_error_shape(response.json(), "validation_error")
        assert error["path"] == "$.page"
        assert reason in error["message"]


async def test_error_single_value_query_param_given_twice_answers_422(serve: Serve) -> None:
    """`?page=1&page=2` for a one-value field is refused naming it, not silently the last."""
    served = await serve(ERRORS)
    response = await served.client.get("/pages?page=1&page=2")
    assert response.status_code == 422
    error = assert_error_shape(response.json(), "validation_error")
    assert error == {
        "code": "validation_error",
        "message": "Expected one value, got several - at `$.page`",
        "path": "$.page",
    }


async def test_error_non_object_body_without_model_answers_422(serve: Serve) -> None:
    """Without a model the JSON body must be an object to merge."""
    served = await serve(ERRORS)
    response = await served.client.post("/echo", json=[1, 2])
    assert response.status_code == 422
    assert assert_error_shape(response.json(), "validation_error")["path"] == "$"


async def test_error_unknown_path_answers_404(serve: Serve) -> None:
    """An unknown path answers 404 not_found in the error shape."""
    served = await serve(ERRORS)
    response = await served.client.get("/nowhere")
    assert response.status_code == 404
    assert "/nowhere" in assert_error_shape(response.json(), "not_found")["message"]


async def test_error_wrong_method_answers_405_with_allow(serve: Serve) -> None:
    """A known path with another method answers 405 with the Allow header."""
    served = await serve(ERRORS)
    response = await served.client.put("/products", json={})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert_error_shape(response.json(), "method_not_allowed")
    response = await served.client.delete("/pages")
    assert response.headers["allow"] == "GET, HEAD"


async def test_error_body_over_limit_answers_413(serve: Serve) -> None:
    """A body larger than HTTP_MAX_BODY answers 413 payload_too_large."""
    served = await serve(ERRORS, settings={"HTTP_MAX_BODY": "64"})
    response = await served.client.post("/echo", json={"text": "x" * 100})
    assert response.status_code == 413
    assert "64 bytes" in assert_error_shape(response.json(), "payload_too_large")["message"]
    small = await served.client.post("/echo", json={"text": "ok"})
    assert small.status_code == 200


async def test_error_body_limit_is_enforced_while_streaming(serve: Serve) -> None:
    """A chunked body is refused once it passes the limit, without reading the rest."""
    served = await serve(ERRORS, settings={"HTTP_MAX_BODY": "100"})
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield b"x" * 50

    response = await served.client.post("/echo", content=endless())
    assert response.status_code == 413
    assert_error_shape(response.json(), "payload_too_large")
    assert pulled < 10


async def test_error_body_limit_checks_declared_length_first(serve: Serve) -> None:
    """A Content-Length over the limit is refused before any of the body is read."""
    served = await serve(ERRORS, settings={"HTTP_MAX_BODY": "10"})
    scope_messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:  # pragma: no cover - must not be called
        scope_messages.append({})
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/echo",
        "query_string": b"",
        "headers": [(b"content-length", b"5000")],
        "client": ("127.0.0.1", 1),
    }
    await served.running.app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert scope_messages == []


async def test_error_request_timeout_answers_504(serve: Serve) -> None:
    """A bus RequestTimeout escaping a handler answers 504 timeout."""
    served = await serve(ERRORS)
    response = await served.client.get("/timeout")
    assert response.status_code == 504
    assert "price.quote" in assert_error_shape(response.json(), "timeout")["message"]


async def test_error_microcore_errors_use_their_status_and_code(serve: Serve) -> None:
    """MicroCoreError subclasses with http_status answer it with their code."""
    served = await serve(ERRORS)
    assert (await served.client.get("/no-responder")).status_code == 503
    response = await served.client.get("/conflict")
    assert response.status_code == 409
    assert_error_shape(response.json(), "conflict")


async def test_error_exception_answers_500_with_id_in_log(serve: Serve) -> None:
    """Any other exception answers 500 with an error id that the traceback's log line has."""
    served = await serve(ERRORS)
    with structlog.testing.capture_logs() as logs:
        response = await served.client.get("/boom")
    assert response.status_code == 500
    error = assert_error_shape(response.json(), "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text
    failures = [e for e in logs if e["event"] == "request_failed"]
    assert len(failures) == 1
    assert failures[0]["error_id"] == error["id"]
    assert isinstance(failures[0]["exc_info"], RuntimeError)
    assert failures[0]["path"] == "/boom"
    assert failures[0]["owner"] == "shop.ErrorsPlugin"


async def test_error_microcore_error_without_status_is_500(serve: Serve) -> None:
    """A MicroCoreError without http_status is treated like any other exception."""
    served = await serve(ERRORS)
    response = await served.client.get("/quiet")
    assert response.status_code == 500
    assert assert_error_shape(response.json(), "internal_error")["id"]


async def test_error_unencodable_result_is_500(serve: Serve) -> None:
    """A result msgspec cannot encode answers 500, not a crash of the server."""
    served = await serve(ERRORS)
    response = await served.client.get("/unencodable")
    assert response.status_code == 500


async def test_error_failure_does_not_break_the_next_request(serve: Serve) -> None:
    """After a 500 the app keeps serving."""
    served = await serve(ERRORS)
    assert (await served.client.get("/boom")).status_code == 500
    assert (await served.client.get("/pages")).json() == {"page": 1}


async def test_error_client_disconnect_while_reading_sends_nothing(serve: Serve) -> None:
    """A client gone while its body is read gets no response and the app does not fail."""
    served = await serve(ERRORS)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/echo",
        "query_string": b"",
        "headers": [(b"content-length", b"5")],
        "client": ("127.0.0.1", 1),
    }
    await served.running.app(scope, receive, send)
    assert sent == []
