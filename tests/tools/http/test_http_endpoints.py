"""add_endpoint: how data is built from the request and how results become responses."""

from __future__ import annotations

from typing import Any

import pytest

from microcore.tooling import HookError, Owner

from .conftest import Serve

PRODUCTS = {
    "domains/shop/models.py": """
    from typing import Annotated
    import msgspec

    class NewProduct(msgspec.Struct, forbid_unknown_fields=True):
        name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
        price: Annotated[float, msgspec.Meta(gt=0)]

    class Product(msgspec.Struct):
        id: int
        name: str

    class ItemQuery(msgspec.Struct):
        item_id: int
        q: str | None = None
        limit: int = 10
        tags: list[str] = []
        active: bool = False

    class Rename(msgspec.Struct):
        product_id: int
        name: str
    """,
    "domains/shop/plugins/products_plugin.py": """
    from starlette.responses import PlainTextResponse
    from microcore import Plugin
    from domains.shop.models import ItemQuery, NewProduct, Product, Rename

    class ProductsPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/products", "POST", self.create,
                                   request_model=NewProduct, status_code=201, tags=["products"])
            self.http.add_endpoint("/items/{item_id:int}", "GET", self.item,
                                   request_model=ItemQuery)
            self.http.add_endpoint("/products/{product_id:int}", "PATCH", self.rename,
                                   request_model=Rename)
            self.http.add_endpoint("/raw/{name}", "POST", self.raw)
            self.http.add_endpoint("/struct", "GET", self.struct)
            self.http.add_endpoint("/list", "GET", self.listing)
            self.http.add_endpoint("/nothing", "DELETE", self.nothing)
            self.http.add_endpoint("/fail", "POST", self.fail)
            self.http.add_endpoint("/teapot", "POST", self.teapot)
            self.http.add_endpoint("/text", "GET", self.text)
            self.http.add_endpoint("/bulk", "POST", self.bulk, request_model=list[NewProduct])

        async def create(self, data, context):
            return {"success": True, "name": data.name, "price": data.price}

        async def item(self, data, context):
            return {"id": data.item_id, "q": data.q, "limit": data.limit,
                    "tags": data.tags, "active": data.active}

        async def rename(self, data, context):
            return {"id": data.product_id, "name": data.name}

        async def raw(self, data, context):
            return data

        async def struct(self, data, context):
            return Product(id=1, name="Pen")

        async def listing(self, data, context):
            return [1, 2, 3]

        async def nothing(self, data, context):
            return None

        async def fail(self, data, context):
            return {"success": False, "error": "out of stock"}

        async def teapot(self, data, context):
            context.set_status(418)
            return {"success": False}

        async def text(self, data, context):
            return PlainTextResponse("plain", status_code=202)

        async def bulk(self, data, context):
            return {"count": len(data), "first": data[0].name}
    """,
}


async def test_endpoint_decodes_json_body_into_request_model(serve: Serve) -> None:
    """A valid JSON body becomes the request_model instance and status_code is used."""
    served = await serve(PRODUCTS)
    response = await served.client.post("/products", json={"name": "Pen", "price": 2.5})
    assert response.status_code == 201
    assert response.json() == {"success": True, "name": "Pen", "price": 2.5}
    assert response.headers["content-type"] == "application/json"


async def test_endpoint_converts_path_and_query_strings_to_field_types(serve: Serve) -> None:
    """Path and query strings are converted to the model's field types, lists from repeats."""
    served = await serve(PRODUCTS)
    response = await served.client.get(
        "/items/7",
        params=[
            ("q", "pen"),
            ("limit", "3"),
            ("tags", "a"),
            ("tags", "b"),
            ("active", "true"),
            ("unknown", "ignored"),
        ],
    )
    assert response.status_code == 200
    assert response.json() == {"id": 7, "q": "pen", "limit": 3, "tags": ["a", "b"], "active": True}


async def test_endpoint_uses_model_defaults_when_query_is_absent(serve: Serve) -> None:
    """Fields missing from the request take the model's defaults."""
    served = await serve(PRODUCTS)
    response = await served.client.get("/items/7")
    assert response.json() == {"id": 7, "q": None, "limit": 10, "tags": [], "active": False}


async def test_endpoint_merges_path_params_with_json_body(serve: Serve) -> None:
    """Path params and the JSON body are merged into one validated model."""
    served = await serve(PRODUCTS)
    response = await served.client.patch("/products/5", json={"name": "Ink"})
    assert response.json() == {"id": 5, "name": "Ink"}


async def test_endpoint_path_params_win_over_body(serve: Serve) -> None:
    """A body field cannot override the path parameter of the same name."""
    served = await serve(PRODUCTS)
    response = await served.client.patch("/products/5", json={"name": "Ink", "product_id": 9})
    assert response.json()["id"] == 5


async def test_endpoint_without_model_gets_dict_of_the_merge(serve: Serve) -> None:
    """Without request_model, data is a dict of query, body and path params."""
    served = await serve(PRODUCTS)
    response = await served.client.post("/raw/pen?page=2", json={"color": "red"})
    assert response.json() == {"page": "2", "color": "red", "name": "pen"}


async def test_endpoint_non_struct_model_decodes_body(serve: Serve) -> None:
    """A request_model like list[Struct] validates the JSON body alone."""
    served = await serve(PRODUCTS)
    response = await served.client.post("/bulk", json=[{"name": "Pen", "price": 1.0}])
    assert response.json() == {"count": 1, "first": "Pen"}


async def test_endpoint_encodes_structs_and_lists(serve: Serve) -> None:
    """Structs and lists are encoded as JSON with 200."""
    served = await serve(PRODUCTS)
    assert (await served.client.get("/struct")).json() == {"id": 1, "name": "Pen"}
    assert (await served.client.get("/list")).json() == [1, 2, 3]


async def test_endpoint_none_answers_204_without_body(serve: Serve) -> None:
    """A handler returning None answers 204 with an empty body."""
    served = await serve(PRODUCTS)
    response = await served.client.delete("/nothing")
    assert response.status_code == 204
    assert response.content == b""


async def test_endpoint_success_false_answers_400(serve: Serve) -> None:
    """A dict with success False answers 400 with the handler's own body."""
    served = await serve(PRODUCTS)
    response = await served.client.post("/fail")
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "out of stock"}


async def test_endpoint_set_status_wins_over_success_false(serve: Serve) -> None:
    """A status set by the handler wins over the success False rule."""
    served = await serve(PRODUCTS)
    assert (await served.client.post("/teapot")).status_code == 418


async def test_endpoint_starlette_response_passes_through(serve: Serve) -> None:
    """A Starlette Response is sent as it is."""
    served = await serve(PRODUCTS)
    response = await served.client.get("/text")
    assert response.status_code == 202
    assert response.text == "plain"
    assert response.headers["content-type"].startswith("text/plain")


async def test_endpoint_head_answers_like_get_without_body(serve: Serve) -> None:
    """HEAD on a GET route answers the GET headers with no body."""
    served = await serve(PRODUCTS)
    response = await served.client.head("/struct")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(b'{"id":1,"name":"Pen"}'))


async def test_endpoint_sync_handler_is_refused(serve: Serve) -> None:
    """A sync handler fails the plugin with a HookError saying to declare it async."""
    served = await serve(
        {
            "domains/a/plugins/sync_plugin.py": """
            from microcore import Plugin
            class SyncPlugin(Plugin):
                def __init__(self, http):
                    self.http = http
                async def on_boot(self):
                    self.http.add_endpoint("/sync", "GET", self.handle)
                def handle(self, data, context):
                    return {}
            """
        }
    )
    status = served.kernel.status().plugins["a.SyncPlugin"]
    assert status.status == "failed"
    assert status.error.type == "HookError"
    assert "async def handle" in status.error.message
    assert (await served.client.get("/sync")).status_code == 404


async def test_handle_refuses_sync_handler_directly(serve: Serve) -> None:
    """Calling add_endpoint with a sync function raises HookError at once."""
    served = await serve({})
    handle = served.http.bind(Owner("tools.test"))

    def handler(data: Any, context: Any) -> None:  # pragma: no cover - never called
        return None

    with pytest.raises(HookError, match="coroutine function"):
        handle.add_endpoint("/x", "GET", handler)  # type: ignore[arg-type]  # the point


async def test_handle_refuses_unknown_method_and_bad_path(serve: Serve) -> None:
    """An unknown method or a malformed path is a RegistrationError that says how to fix it."""
    from microcore.tooling import RegistrationError

    served = await serve({})
    handle = served.http.bind(Owner("tools.test"))

    async def handler(data: Any, context: Any) -> Any:  # pragma: no cover - never called
        return None

    with pytest.raises(RegistrationError, match="not supported"):
        handle.add_endpoint("/x", "FETCH", handler)
    with pytest.raises(RegistrationError, match="must start with '/'"):
        handle.add_endpoint("x", "GET", handler)
    with pytest.raises(RegistrationError, match="Starlette syntax"):
        handle.add_endpoint("/x/{id:nope}", "GET", handler)
