"""What /openapi.json says about /system/*: the token guard, the 401, the real content types."""

from __future__ import annotations

from typing import Any

from starlette.responses import HTMLResponse, PlainTextResponse

from tests.tools.system.conftest import PRODUCTION, Boot
from tools.http import Context
from tools.system.system_tool import SECURITY_SCHEMES, documented

GUARDED = (
    "/system/status",
    "/system/routes",
    "/system/events",
    "/system/graph",
    "/system/metrics",
    "/system/feed",
    "/system/dashboard",
    "/system/dashboard/{asset}",
)
TOKEN_SECURITY: list[dict[str, list[str]]] = [{"systemToken": []}, {"systemTokenCookie": []}]

PAGES = {  # a plugin whose handlers declare their response classes
    "domains/pages/__init__.py": "",
    "domains/pages/plugins/pages_plugin.py": """
    from starlette.responses import HTMLResponse, PlainTextResponse, Response
    from microcore import Plugin

    class PagesPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/page", "GET", self.page)
            self.http.add_endpoint("/either", "GET", self.either)
            self.http.add_endpoint("/plain", "GET", self.plain)
            self.http.add_endpoint("/unknown", "GET", self.unknown, response_model=dict)
            self.http.add_endpoint("/declared", "GET", self.declared)

        async def page(self, data, context) -> HTMLResponse:
            return HTMLResponse("<p>hi</p>")

        async def either(self, data, context) -> HTMLResponse | PlainTextResponse:
            return PlainTextResponse("hi")

        async def plain(self, data, context) -> Response:
            return Response(b"?")

        async def unknown(self, data, context) -> "NoSuchType":
            return {}

        async def declared(self, data, context):
            return {}

        declared.openapi = {"responses": {"418": "I am a teapot", "409": "NotFound"}}
    """,
}


async def _document(system: Any) -> dict[str, Any]:
    response = await system.client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_openapi_guarded_routes_declare_the_token_outside_development(boot: Boot) -> None:
    """In production every /system/* route but health needs the bearer token or the cookie."""
    document = await _document(await boot(settings=PRODUCTION))
    schemes = document["components"]["securitySchemes"]
    assert schemes["systemToken"] == {**SECURITY_SCHEMES["systemToken"]}
    assert schemes["systemToken"]["scheme"] == "bearer"
    assert schemes["systemTokenCookie"]["in"] == "cookie"
    assert schemes["systemTokenCookie"]["name"] == "system_token"
    for path in GUARDED:
        operation = document["paths"][path]["get"]
        assert operation["security"] == TOKEN_SECURITY, path
        assert "401" in operation["responses"], path
    health = document["paths"]["/system/health"]["get"]
    assert "security" not in health
    assert "401" not in health["responses"]


async def test_openapi_guard_401_is_the_error_shape_but_the_dashboard_login_is_html(
    boot: Boot,
) -> None:
    """A guarded route's 401 is the error shape; the dashboard's is its HTML login page."""
    document = await _document(await boot(settings=PRODUCTION))
    status = document["paths"]["/system/status"]["get"]["responses"]["401"]
    assert status == {"$ref": "#/components/responses/Unauthorized"}
    shape = document["components"]["responses"]["Unauthorized"]["content"]["application/json"]
    assert shape["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    login = document["paths"]["/system/dashboard"]["get"]["responses"]["401"]
    assert set(login["content"]) == {"text/html"}


async def test_openapi_system_routes_declare_their_content_types(boot: Boot) -> None:
    """HTML, Prometheus text, an event stream and script/style are not documented as JSON."""
    document = await _document(await boot(settings=PRODUCTION))

    def ok(path: str) -> set[str]:
        return set(document["paths"][path]["get"]["responses"]["200"]["content"])

    assert ok("/system/dashboard") == {"text/html"}
    assert ok("/system/metrics") == {"text/plain; version=0.0.4; charset=utf-8"}
    assert ok("/system/feed") == {"text/event-stream"}
    assert ok("/system/dashboard/{asset}") == {"text/javascript", "text/css"}
    assert ok("/system/status") == {"application/json"}
    feed = document["paths"]["/system/feed"]["get"]["responses"]["200"]["content"]
    assert "ready" in feed["text/event-stream"]["schema"]["properties"]["event"]["enum"]


async def test_openapi_answers_match_the_declared_content_types(boot: Boot) -> None:
    """What the routes answer has the content type the document declares."""
    system = await boot()
    document = await _document(system)
    for path, served in (
        ("/system/dashboard", "/system/dashboard"),
        ("/system/metrics", "/system/metrics"),
        ("/system/dashboard/{asset}", "/system/dashboard/dashboard.css"),
    ):
        declared = document["paths"][path]["get"]["responses"]["200"]["content"]
        answered = (await system.client.get(served)).headers["content-type"]
        assert any(answered.startswith(media.split(";")[0]) for media in declared), path


async def test_openapi_development_declares_no_guard(boot: Boot) -> None:
    """In development /system/* is open, and the document says so: no security, no 401."""
    document = await _document(await boot())
    assert "securitySchemes" not in document["components"]
    for path in GUARDED:
        operation = document["paths"][path]["get"]
        assert "security" not in operation, path
        assert "401" not in operation["responses"], path


async def test_openapi_error_responses_share_the_error_shape(boot: Boot) -> None:
    """Every error response in the components is the one error shape."""
    document = await _document(await boot(settings=PRODUCTION))
    responses = document["components"]["responses"]
    assert {"BadRequest", "NotFound", "MethodNotAllowed", "ValidationError"} <= set(responses)
    for response in responses.values():
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    events = document["paths"]["/system/events"]["get"]["responses"]
    assert {"400", "422", "500"} <= set(events)


async def test_openapi_response_classes_and_declared_responses_of_plugins(boot: Boot) -> None:
    """A handler's Response return class is its content type; its ``openapi`` mapping adds
    responses by error name or description; an unresolvable annotation falls back to JSON."""
    document = await _document(await boot(files=PAGES))

    def operation(path: str) -> dict[str, Any]:
        found: dict[str, Any] = document["paths"][path]["get"]
        return found

    assert set(operation("/page")["responses"]["200"]["content"]) == {"text/html"}
    assert set(operation("/either")["responses"]["200"]["content"]) == {"text/html", "text/plain"}
    assert set(operation("/plain")["responses"]["200"]["content"]) == {"application/json"}
    assert set(operation("/unknown")["responses"]["200"]["content"]) == {"application/json"}
    declared = operation("/declared")["responses"]
    assert declared["418"] == {"description": "I am a teapot"}
    assert declared["409"] == {"$ref": "#/components/responses/NotFound"}
    assert list(declared) == sorted(declared)


async def test_documented_merges_responses_and_keeps_calling_the_handler() -> None:
    """``documented`` merges the handler's own ``openapi`` and the parts given, in order."""

    async def handler(data: Any, context: Context) -> Any:
        return {"data": data}

    first = documented(handler, {"responses": {"200": "one"}, "security": [{"a": []}]})
    second = documented(first, {"responses": {"401": "two"}, "security": [{"b": []}]})
    assert second.__dict__["openapi"] == {
        "responses": {"200": "one", "401": "two"},
        "security": [{"b": []}],
    }
    assert await second(1, Context.__new__(Context)) == {"data": 1}
    assert (HTMLResponse.media_type, PlainTextResponse.media_type) == ("text/html", "text/plain")
