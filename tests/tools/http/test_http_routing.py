"""Route matching details: trailing slashes, query parsing, merges, the routes listing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from microcore.tooling import Owner, RouteKind, ServedRoute, ServesRoutes

from .conftest import Serve

ROUTES = {
    "domains/shop/plugins/routes_plugin.py": """
    from typing import Annotated
    import msgspec
    from microcore import Plugin

    class Order(msgspec.Struct):
        item: str
        price: float
        quantity: Annotated[int, msgspec.Meta(ge=1)] = 1
        note: str | None = None

    class Strict(msgspec.Struct, forbid_unknown_fields=True):
        name: str

    class RoutesPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/products", "GET", self.listing, tags=["products"],
                                   summary="List products")
            self.http.add_endpoint("/echo", "GET", self.echo)
            self.http.add_endpoint("/orders", "POST", self.order, request_model=Order)
            self.http.add_endpoint("/files/{rest:path}", "GET", self.files)
            self.http.add_endpoint("/users/{user_id:uuid}", "GET", self.user)
            self.http.add_endpoint("/shops/{shop}/items", "POST", self.strict,
                                   request_model=Strict)

        async def listing(self, data, context):
            return []

        async def echo(self, data, context):
            return data

        async def order(self, data, context):
            return msgspec.structs.asdict(data)

        async def files(self, data, context):
            return {"rest": data["rest"]}

        async def user(self, data, context):
            return {"id": str(data["user_id"])}

        async def strict(self, data, context):
            return {"name": data.name, "shop": context.params["shop"]}
    """
}


async def test_routing_trailing_slash_redirects_to_the_route(serve: Serve) -> None:
    """A GET for the other slash variant of a route is redirected there, query kept."""
    served = await serve(ROUTES)
    response = await served.client.get("/products/?page=2")
    assert response.status_code == 307
    assert response.headers["location"] == "/products?page=2"
    assert (await served.client.post("/products/")).status_code == 404


async def test_routing_query_is_percent_decoded(serve: Serve) -> None:
    """Query values are percent- and plus-decoded; blank values are kept."""
    served = await serve(ROUTES)
    response = await served.client.get("/echo?name=caf%C3%A9+au+lait&empty=&flag")
    assert response.json() == {"name": "café au lait", "empty": "", "flag": ""}


async def test_routing_query_converts_while_body_stays_strict(serve: Serve) -> None:
    """With a body, query strings are converted to field types but JSON values are not."""
    served = await serve(ROUTES)
    response = await served.client.post("/orders?quantity=3", json={"item": "pen", "price": 2.5})
    assert response.json() == {"item": "pen", "price": 2.5, "quantity": 3, "note": None}
    strict = await served.client.post("/orders?quantity=3", json={"item": "pen", "price": "2.5"})
    assert strict.status_code == 422
    assert strict.json()["error"]["path"] == "$.price"
    bad_query = await served.client.post("/orders?quantity=0", json={"item": "pen", "price": 1})
    assert bad_query.status_code == 422
    assert bad_query.json()["error"]["path"] == "$.quantity"


async def test_routing_path_and_uuid_convertors(serve: Serve) -> None:
    """Starlette's path and uuid convertors work; a non-uuid does not match."""
    served = await serve(ROUTES)
    assert (await served.client.get("/files/a/b/c.txt")).json() == {"rest": "a/b/c.txt"}
    uid = "12345678-1234-5678-1234-567812345678"
    assert (await served.client.get(f"/users/{uid}")).json() == {"id": uid}
    assert (await served.client.get("/users/not-a-uuid")).status_code == 404


async def test_routing_path_params_outside_the_model_stay_in_context(serve: Serve) -> None:
    """A path param the model does not declare is left out of data, not an unknown field."""
    served = await serve(ROUTES)
    response = await served.client.post("/shops/north/items", json={"name": "pen"})
    assert response.json() == {"name": "pen", "shop": "north"}
    extra = await served.client.post("/shops/north/items", json={"name": "pen", "x": 1})
    assert extra.status_code == 422


async def test_routing_chunked_body_under_limit_is_read_whole(serve: Serve) -> None:
    """A chunked body under the limit arrives whole."""
    served = await serve(ROUTES, settings={"HTTP_MAX_BODY": "1000"})

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"item": "pen",'
        yield b' "price": 1.5}'

    response = await served.client.post("/orders", content=chunks())
    assert response.json()["item"] == "pen"


async def test_routing_routes_lists_what_serves(serve: Serve) -> None:
    """HttpTool.routes() lists each serving registration with its owner."""
    served = await serve(ROUTES)
    assert isinstance(served.http, ServesRoutes)
    rows = {(r.kind, r.label): r for r in served.http.routes()}
    listing = rows[(RouteKind.ENDPOINT, "GET /products")]
    assert isinstance(listing, ServedRoute)
    assert listing.owner == "shop.RoutesPlugin"
    assert listing.tags == ("products",)
    assert listing.summary == "List products"
    assert (RouteKind.ENDPOINT, "GET /openapi.json") in rows
    pending = Owner("shop.Later")
    served.http.bind(pending).add_endpoint("/later", "GET", _handler)
    assert (RouteKind.ENDPOINT, "GET /later") not in {
        (r.kind, r.label) for r in served.http.routes()
    }


async def test_routing_routes_lists_every_kind(serve: Serve, tmp_path: Path) -> None:
    """Websockets, static mounts and middleware are listed with their path (or none)."""
    served = await serve(ROUTES)
    owner = Owner("tools.kinds")
    owner.activate()
    handle = served.http.bind(owner)
    handle.add_websocket("/ws/{room}", _socket)
    handle.mount_static("/assets/", tmp_path)
    handle.add_middleware(_middleware)
    rows = {r.kind: r for r in served.http.routes() if r.owner == "tools.kinds"}
    assert rows[RouteKind.WEBSOCKET].path == "/ws/{room}"
    assert rows[RouteKind.WEBSOCKET].method is None
    assert rows[RouteKind.STATIC].path == "/assets"
    assert rows[RouteKind.MIDDLEWARE].path is None
    assert rows[RouteKind.MIDDLEWARE].label.endswith("_middleware")


async def test_routing_cors_exposes_request_id(serve: Serve) -> None:
    """Browsers may read X-Request-ID on cross-origin responses."""
    served = await serve(ROUTES, settings={"HTTP_CORS_ORIGINS": "https://app.example.com"})
    response = await served.client.get("/products", headers={"Origin": "https://app.example.com"})
    assert response.headers["access-control-expose-headers"] == "x-request-id"


async def _handler(data: Any, context: Any) -> Any:  # pragma: no cover - never served
    return None


async def _socket(websocket: Any) -> None:  # pragma: no cover - never served
    return None


async def _middleware(context: Any, call_next: Any) -> Any:  # pragma: no cover - never served
    return await call_next()
