"""Typed handlers: models read from annotations, and HttpError subclasses raised by handlers."""

from __future__ import annotations

from typing import Any

import pytest

from microcore.tooling import Owner, RegistrationError

from .conftest import Serve

MODELS = """
from __future__ import annotations

import msgspec

class NewProduct(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    price: float

class Product(msgspec.Struct):
    id: int
    name: str
    price: float

class ProductId(msgspec.Struct):
    product_id: int

class Other(msgspec.Struct):
    label: str
"""

TYPED = {
    "domains/shop/models.py": MODELS,
    "domains/shop/plugins/typed_plugin.py": """
    from __future__ import annotations

    from typing import Any

    from starlette.responses import Response

    from microcore import Plugin
    from tools.http import Context, Http
    from domains.shop.models import NewProduct, Other, Product, ProductId

    class TypedPlugin(Plugin):
        def __init__(self, http: Http) -> None:
            self.http = http

        async def on_boot(self) -> None:
            self.http.add_endpoint("/products", "POST", self.create, status_code=201)
            self.http.add_endpoint("/products", "GET", self.listing)
            self.http.add_endpoint("/products/{product_id:int}", "GET", self.show)
            self.http.add_endpoint("/explicit", "POST", self.explicit,
                                   request_model=Other, response_model=list[Other])
            self.http.add_endpoint("/plain", "POST", self.plain)
            self.http.add_endpoint("/raw", "GET", self.raw)
            self.http.add_endpoint("/nothing", "DELETE", self.nothing)

        async def create(self, data: NewProduct, context: Context) -> Product:
            return Product(id=7, name=data.name, price=data.price)

        async def listing(self, data: dict[str, Any], context: Context) -> list[Product]:
            if data.get("bad"):
                return [{"id": "seven"}]  # type: ignore[list-item]
            return [Product(id=1, name="pen", price=1.5)]

        async def show(self, data: ProductId, context: Context) -> Product:
            return Product(id=data.product_id, name="pen", price=1.5)

        async def explicit(self, data: NewProduct, context: Context) -> Product:
            return [Other(label=data.label)]  # type: ignore[attr-defined, return-value]

        async def plain(self, data: dict[str, Any], context: Context) -> dict[str, Any]:
            return {"got": data}

        async def raw(self, data: Any, context: Context) -> Response:
            return Response(b"raw")

        async def nothing(self, data: Any, context: Context) -> None:
            return None
    """,
}


def _route(served: Any, label: str) -> Any:
    return next(r for r in served.http.routes() if r.label == label)


async def test_annotations_data_struct_is_the_request_model(serve: Serve) -> None:
    """Without request_model=, the Struct annotating data decodes and validates the request."""
    served = await serve(TYPED)
    created = await served.client.post("/products", json={"name": "pen", "price": 1.5})
    assert created.status_code == 201
    assert created.json() == {"id": 7, "name": "pen", "price": 1.5}
    refused = await served.client.post("/products", json={"name": "pen", "price": "cheap"})
    assert refused.status_code == 422
    assert refused.json()["error"]["path"] == "$.price"
    assert (await served.client.get("/products/3")).json()["id"] == 3


async def test_annotations_return_struct_and_list_are_the_response_model(serve: Serve) -> None:
    """Without response_model=, a Struct or list[Struct] return annotation is the model."""
    served = await serve(TYPED, settings={"MICROCORE_ENV": "development"})
    created = _route(served, "POST /products")
    assert created.request_model.__qualname__ == "NewProduct"
    assert created.response_model.__qualname__ == "Product"
    listing = _route(served, "GET /products")
    assert listing.request_model is None
    assert str(listing.response_model) == "list[domains.shop.models.Product]"
    checked = await served.client.get("/products?bad=1")
    assert checked.status_code == 500
    assert checked.json()["error"]["code"] == "response_validation_error"


async def test_annotations_other_return_types_mean_no_model(serve: Serve) -> None:
    """dict, Response and None return annotations (and dict/Any data) declare no model."""
    served = await serve(TYPED)
    for label in ("POST /plain", "GET /raw", "DELETE /nothing"):
        route = _route(served, label)
        assert (route.request_model, route.response_model) == (None, None), label
    assert (await served.client.post("/plain", json={"a": 1})).json() == {"got": {"a": 1}}
    assert (await served.client.get("/raw")).content == b"raw"
    assert (await served.client.delete("/nothing")).status_code == 204


async def test_annotations_explicit_models_win(serve: Serve) -> None:
    """request_model= and response_model= override what the annotations say."""
    served = await serve(TYPED)
    route = _route(served, "POST /explicit")
    assert route.request_model.__name__ == "Other"
    assert str(route.response_model) == "list[domains.shop.models.Other]"
    response = await served.client.post("/explicit", json={"label": "x"})
    assert response.json() == [{"label": "x"}]


async def test_annotations_show_in_openapi(serve: Serve) -> None:
    """/openapi.json documents the models taken from the annotations."""
    served = await serve(TYPED)
    doc = (await served.client.get("/openapi.json")).json()
    create = doc["paths"]["/products"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/NewProduct"}
    answer = create["responses"]["201"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/Product"}
    listing = doc["paths"]["/products"]["get"]["responses"]["200"]["content"]
    assert listing["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Product"},
    }
    assert {"NewProduct", "Product"} <= set(doc["components"]["schemas"])


async def test_annotations_unresolvable_name_is_refused(serve: Serve) -> None:
    """An annotation naming nothing importable fails the plugin with a RegistrationError."""
    served = await serve(
        {
            "domains/shop/plugins/broken_plugin.py": """
            from __future__ import annotations

            from typing import TYPE_CHECKING

            from microcore import Plugin

            if TYPE_CHECKING:
                from domains.shop.models import Missing

            class BrokenPlugin(Plugin):
                def __init__(self, http):
                    self.http = http

                async def on_boot(self):
                    self.http.add_endpoint("/broken", "POST", self.execute)

                async def execute(self, data: Missing, context) -> None:
                    return None
            """,
        }
    )
    status = served.kernel.status().plugins["shop.BrokenPlugin"]
    assert status.status == "failed"
    assert status.error.type == "RegistrationError"
    message = status.error.message
    assert "POST /broken of 'shop.BrokenPlugin'" in message
    assert "BrokenPlugin.execute cannot be resolved" in message
    assert "'Missing' is not defined" in message
    assert "TYPE_CHECKING" in message
    assert (await served.client.post("/broken", json={})).status_code == 404


async def test_annotations_explicit_models_skip_resolution(serve: Serve) -> None:
    """With both models given, annotations are not read (an unresolvable one is harmless)."""
    served = await serve({})
    owner = Owner("tools.test")
    owner.activate()

    async def handler(data: Missing, context: Any) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    handle = served.http.bind(owner)
    handle.add_endpoint("/given", "POST", handler, request_model=dict, response_model=dict)
    with pytest.raises(RegistrationError, match="cannot be resolved"):
        handle.add_endpoint("/guessed", "POST", handler)


async def test_annotations_only_data_and_return_are_resolved(serve: Serve) -> None:
    """A context annotation imported only under TYPE_CHECKING (or naming nothing) is harmless."""
    served = await serve({})
    owner = Owner("tools.test")
    owner.activate()

    async def handler(data: dict[str, Any], context: Missing) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    async def stream(data: dict[str, Any], context: Any) -> Missing:  # type: ignore[name-defined]  # noqa: F821
        yield {}

    handle = served.http.bind(owner)
    handle.add_endpoint("/typed-context", "GET", handler)
    handle.add_sse("/stream", stream)
    assert _route(served, "GET /typed-context").request_model is None


async def test_annotations_callable_object_and_unannotated_declare_nothing(serve: Serve) -> None:
    """An async callable object, or a handler without annotations, gets no models."""
    served = await serve({})
    owner = Owner("tools.test")
    owner.activate()

    class Handler:
        async def __call__(self, data: Any, context: Any) -> None:
            return None

    async def bare(data, context):  # type: ignore[no-untyped-def]
        return None

    async def no_params() -> None:
        return None

    handle = served.http.bind(owner)
    handle.add_endpoint("/object", "GET", Handler())
    handle.add_endpoint("/bare", "GET", bare)
    handle.add_endpoint("/none", "GET", no_params)  # type: ignore[arg-type]  # tolerated
    for label in ("GET /object", "GET /bare", "GET /none"):
        route = _route(served, label)
        assert (route.request_model, route.response_model) == (None, None), label
