"""add_middleware, CORS and response_model checks around endpoints."""

from __future__ import annotations

import structlog

from .conftest import Serve

MIDDLEWARE = {
    "domains/a/plugins/mw_plugin.py": """
    from microcore import Plugin

    class MwPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_middleware(self.outer)
            self.http.add_middleware(self.inner)
            self.http.add_endpoint("/hello", "GET", self.hello)

        async def outer(self, context, call_next):
            if context.headers.get("x-block"):
                context.set_status(403)
                return {"success": False, "error": {"code": "blocked", "message": "blocked"}}
            if context.headers.get("x-crash"):
                raise RuntimeError("middleware bug")
            response = await call_next()
            response.headers["x-order"] = response.headers.get("x-order", "") + "outer"
            return response

        async def inner(self, context, call_next):
            response = await call_next()
            response.headers["x-order"] = "inner,"
            context.set_header("x-after", "yes")
            return response

        async def hello(self, data, context):
            context.set_header("x-handler", "1")
            return {"hello": "world"}
    """,
    "domains/a/plugins/other_plugin.py": """
    from microcore import Plugin

    class OtherPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/other", "GET", self.other)

        async def other(self, data, context):
            return {"other": True}
    """,
}


async def test_middleware_wraps_requests_in_registration_order(serve: Serve) -> None:
    """Middleware runs outermost first and can change the response on the way out."""
    served = await serve(MIDDLEWARE)
    response = await served.client.get("/hello")
    assert response.json() == {"hello": "world"}
    assert response.headers["x-order"] == "inner,outer"
    assert response.headers["x-handler"] == "1"
    assert response.headers["x-after"] == "yes"


async def test_middleware_applies_to_every_plugin_and_to_404(serve: Serve) -> None:
    """A plugin's middleware wraps other plugins' routes and unknown paths too."""
    served = await serve(MIDDLEWARE)
    assert (await served.client.get("/other")).headers["x-order"] == "inner,outer"
    missing = await served.client.get("/missing")
    assert missing.status_code == 404
    assert missing.headers["x-order"] == "inner,outer"


async def test_middleware_can_answer_without_calling_next(serve: Serve) -> None:
    """Middleware may return a result of its own, encoded like a handler's."""
    served = await serve(MIDDLEWARE)
    response = await served.client.get("/hello", headers={"x-block": "1"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "blocked"


async def test_middleware_exception_answers_500_with_id(serve: Serve) -> None:
    """An exception in middleware is a 500 with an error id, logged."""
    served = await serve(MIDDLEWARE)
    with structlog.testing.capture_logs() as logs:
        response = await served.client.get("/hello", headers={"x-crash": "1"})
    assert response.status_code == 500
    error_id = response.json()["error"]["id"]
    assert [e["error_id"] for e in logs if e["event"] == "request_failed"] == [error_id]


async def test_middleware_is_removed_with_its_plugin(serve: Serve) -> None:
    """Unloading the plugin that registered middleware removes the middleware."""
    served = await serve(MIDDLEWARE)
    await served.kernel.unload("a.MwPlugin")
    response = await served.client.get("/other")
    assert response.status_code == 200
    assert "x-order" not in response.headers


async def test_middleware_sync_function_is_refused(serve: Serve) -> None:
    """A sync middleware fails its plugin with a HookError."""
    served = await serve(
        {
            "domains/a/plugins/sync_plugin.py": """
            from microcore import Plugin
            class SyncPlugin(Plugin):
                def __init__(self, http):
                    self.http = http
                async def on_boot(self):
                    self.http.add_middleware(self.mw)
                def mw(self, context, call_next):
                    return None
            """
        }
    )
    error = served.kernel.status().plugins["a.SyncPlugin"].error
    assert error.type == "HookError"


CORS_SETTINGS = {"HTTP_CORS_ORIGINS": "https://app.example.com, https://admin.example.com"}


async def test_cors_preflight_from_allowed_origin_answers_204(serve: Serve) -> None:
    """A preflight from a configured origin gets the allowed methods and headers."""
    served = await serve(MIDDLEWARE, settings=CORS_SETTINGS)
    response = await served.client.options(
        "/hello",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type"
    assert response.headers["access-control-max-age"] == "600"


async def test_cors_preflight_from_other_origin_is_refused(serve: Serve) -> None:
    """A preflight from an origin not configured answers 400 without allow-origin."""
    served = await serve(MIDDLEWARE, settings=CORS_SETTINGS)
    response = await served.client.options(
        "/hello",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "cors_rejected"
    assert "access-control-allow-origin" not in response.headers


async def test_cors_simple_request_gets_allow_origin(serve: Serve) -> None:
    """A request from an allowed origin is answered with allow-origin and Vary."""
    served = await serve(MIDDLEWARE, settings=CORS_SETTINGS)
    response = await served.client.get("/other", headers={"Origin": "https://admin.example.com"})
    assert response.headers["access-control-allow-origin"] == "https://admin.example.com"
    assert response.headers["vary"] == "Origin"
    other = await served.client.get("/other", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


async def test_cors_wildcard_and_credentials(serve: Serve) -> None:
    """'*' allows any origin; with credentials the origin is echoed instead of '*'."""
    served = await serve(MIDDLEWARE, settings={"HTTP_CORS_ORIGINS": "*"})
    response = await served.client.get("/other", headers={"Origin": "https://x.example"})
    assert response.headers["access-control-allow-origin"] == "*"


async def test_cors_credentials_echo_a_listed_origin(serve: Serve) -> None:
    """With HTTP_CORS_CREDENTIALS a listed origin is echoed and credentials allowed; an
    origin not listed gets neither."""
    settings = {**CORS_SETTINGS, "HTTP_CORS_CREDENTIALS": "true"}
    served = await serve(MIDDLEWARE, settings=settings)
    origin = "https://app.example.com"
    response = await served.client.get("/other", headers={"Origin": origin})
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
    other = await served.client.get("/other", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-credentials" not in other.headers


async def test_cors_any_origin_with_credentials_is_refused_at_boot(serve: Serve) -> None:
    """'*' with credentials would let every site act as the user: the http tool refuses to
    start, naming both settings and what to do instead."""
    settings = {"HTTP_CORS_ORIGINS": "*", "HTTP_CORS_CREDENTIALS": "true"}
    served = await serve(MIDDLEWARE, settings=settings)
    record = served.kernel.tools["http"]
    assert record.status == "failed"
    assert "HTTP_CORS_ORIGINS=*" in record.error.message
    assert "HTTP_CORS_CREDENTIALS" in record.error.message
    assert "list the origins" in record.error.message


async def test_cors_restricted_headers_and_methods(serve: Serve) -> None:
    """Preflights asking for a method or header outside the configuration are refused."""
    settings = {
        **CORS_SETTINGS,
        "HTTP_CORS_METHODS": "GET",
        "HTTP_CORS_HEADERS": "content-type",
    }
    served = await serve(MIDDLEWARE, settings=settings)
    origin = "https://app.example.com"
    refused = await served.client.options(
        "/hello", headers={"Origin": origin, "Access-Control-Request-Method": "DELETE"}
    )
    assert refused.status_code == 400
    refused = await served.client.options(
        "/hello",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-secret",
        },
    )
    assert refused.status_code == 400
    allowed = await served.client.options(
        "/hello",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    assert allowed.status_code == 204


async def test_cors_off_without_configuration(serve: Serve) -> None:
    """Without HTTP_CORS_ORIGINS no CORS header is ever sent."""
    served = await serve(MIDDLEWARE)
    response = await served.client.get("/other", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in response.headers


RESPONSE_MODEL = {
    "domains/a/plugins/typed_plugin.py": """
    import msgspec
    from microcore import Plugin

    class Product(msgspec.Struct):
        id: int
        name: str

    class TypedPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/good", "GET", self.good, response_model=Product)
            self.http.add_endpoint("/struct", "GET", self.struct, response_model=Product)
            self.http.add_endpoint("/bad", "GET", self.bad, response_model=Product)
            self.http.add_endpoint("/many", "GET", self.many, response_model=list[Product])

        async def good(self, data, context):
            return {"id": 1, "name": "Pen"}

        async def struct(self, data, context):
            return Product(id=2, name="Ink")

        async def bad(self, data, context):
            return {"id": "one", "name": "Pen"}

        async def many(self, data, context):
            return [{"id": 1, "name": "Pen"}]
    """
}


async def test_response_model_validated_in_development(serve: Serve) -> None:
    """In development a result that does not match response_model is a 500 naming the field."""
    served = await serve(RESPONSE_MODEL, settings={"MICROCORE_ENV": "development"})
    assert (await served.client.get("/good")).json() == {"id": 1, "name": "Pen"}
    assert (await served.client.get("/struct")).json() == {"id": 2, "name": "Ink"}
    assert (await served.client.get("/many")).status_code == 200
    response = await served.client.get("/bad")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "response_validation_error"
    assert "$.id" in error["message"]


async def test_response_model_not_checked_in_production(serve: Serve) -> None:
    """In production the result is sent without the response_model check."""
    served = await serve(RESPONSE_MODEL, settings={"MICROCORE_ENV": "production"})
    response = await served.client.get("/bad")
    assert response.status_code == 200
    assert response.json() == {"id": "one", "name": "Pen"}
