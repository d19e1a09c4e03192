"""GET /openapi.json and GET /docs: generated from the models, served offline."""

from __future__ import annotations

import importlib.util
import re
import sys
from typing import Any

import pytest

from microcore.tooling import Owner

from .conftest import Serve

API = {
    # auth= needs a token verifier: a stand-in for the auth tool
    "tools/tokens/tokens_tool.py": """
    from microcore import Tool

    class TokensTool(Tool):
        name = "tokens"

        def __init__(self, http):
            self.http = http

        async def setup(self):
            self.http.use_token_verifier(lambda token: None)
    """,
    "domains/shop/models.py": """
    from typing import Annotated
    import msgspec

    class NewProduct(msgspec.Struct, forbid_unknown_fields=True):
        name: Annotated[str, msgspec.Meta(min_length=1)]
        price: Annotated[float, msgspec.Meta(gt=0)]

    class Product(msgspec.Struct):
        id: int
        name: str
        price: float

    class Search(msgspec.Struct):
        q: str
        limit: int = 10

    class Rename(msgspec.Struct):
        product_id: int
        name: str
    """,
    "domains/shop/plugins/catalog_plugin.py": """
    from microcore import Plugin
    from domains.shop.models import NewProduct, Product, Rename, Search

    class CatalogPlugin(Plugin):
        def __init__(self, http):
            self.http = http

        async def on_boot(self):
            self.http.add_endpoint("/products", "POST", self.create, request_model=NewProduct,
                                   response_model=Product, status_code=201, tags=["products"])
            self.http.add_endpoint("/products", "GET", self.search, request_model=Search,
                                   response_model=list[Product], tags=["products"])
            self.http.add_endpoint("/products/{product_id:int}", "PATCH", self.rename,
                                   request_model=Rename, tags=["products"], auth="user")
            self.http.add_endpoint("/products/{product_id:int}", "DELETE", self.delete,
                                   status_code=204, summary="Remove a product")
            self.http.add_sse("/products/feed", self.feed)

        async def create(self, data, context):
            \"\"\"Create a product.

            The price is in euros.
            \"\"\"
            return Product(id=1, name=data.name, price=data.price)

        async def search(self, data, context):
            return []

        async def rename(self, data, context):
            return None

        async def delete(self, data, context):
            return None

        async def feed(self, data, context):
            yield {}
    """,
}


async def test_openapi_lists_every_endpoint_with_schemas(serve: Serve) -> None:
    """/openapi.json is OpenAPI 3.1 with every endpoint, its tags, summary and schemas."""
    served = await serve(API)
    doc = (await served.client.get("/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    assert set(paths) == {"/products", "/products/{product_id}", "/products/feed"}
    create = paths["/products"]["post"]
    assert create["tags"] == ["products"]
    assert create["summary"] == "Create a product."
    assert create["description"] == "The price is in euros."
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/NewProduct"}
    created = create["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/Product"}
    schemas = doc["components"]["schemas"]
    assert schemas["NewProduct"]["properties"]["price"] == {
        "type": "number",
        "exclusiveMinimum": 0.0,
    }
    assert schemas["NewProduct"]["required"] == ["name", "price"]


async def test_openapi_query_and_path_parameters_are_typed(serve: Serve) -> None:
    """Model fields become query params on GET; path params take the field or convertor type."""
    served = await serve(API)
    doc = (await served.client.get("/openapi.json")).json()
    search = doc["paths"]["/products"]["get"]
    params = {p["name"]: p for p in search["parameters"]}
    assert params["q"] == {
        "name": "q",
        "in": "query",
        "required": True,
        "schema": {"type": "string"},
    }
    assert params["limit"]["required"] is False
    assert params["limit"]["schema"] == {"type": "integer", "default": 10}
    listing = search["responses"]["200"]["content"]["application/json"]["schema"]
    assert listing == {"type": "array", "items": {"$ref": "#/components/schemas/Product"}}
    delete = doc["paths"]["/products/{product_id}"]["delete"]
    assert delete["parameters"] == [
        {"name": "product_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    ]
    assert delete["summary"] == "Remove a product"
    assert "content" not in delete["responses"]["204"]


async def test_openapi_body_leaves_out_path_parameters(serve: Serve) -> None:
    """A body model's fields that come from the path are not asked for in the body."""
    served = await serve(API)
    doc = (await served.client.get("/openapi.json")).json()
    rename = doc["paths"]["/products/{product_id}"]["patch"]
    body = rename["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"name"}
    assert body["required"] == ["name"]


async def test_openapi_documents_error_responses_and_auth(serve: Serve) -> None:
    """Error responses use the one error shape; endpoints with auth carry security."""
    served = await serve(API)
    doc = (await served.client.get("/openapi.json")).json()
    create = doc["paths"]["/products"]["post"]["responses"]
    assert create["422"] == {"$ref": "#/components/responses/ValidationError"}
    assert {"400", "413", "422", "500"} <= set(create)
    error = doc["components"]["responses"]["ValidationError"]["content"]["application/json"]
    assert error["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    shape = doc["components"]["schemas"]["ErrorBody"]
    assert shape["required"] == ["success", "error"]
    rename = doc["paths"]["/products/{product_id}"]["patch"]
    assert rename["security"] == [{"bearerAuth": []}, {"cookieAuth": []}]
    assert {"401", "403"} <= set(rename["responses"])
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_openapi_sse_is_an_event_stream(serve: Serve) -> None:
    """An SSE endpoint is documented as text/event-stream."""
    served = await serve(API)
    doc = (await served.client.get("/openapi.json")).json()
    feed = doc["paths"]["/products/feed"]["get"]["responses"]["200"]
    assert "text/event-stream" in feed["content"]


async def test_openapi_follows_route_changes(serve: Serve) -> None:
    """The document is rebuilt when routes change (and unique operation ids are kept)."""
    served = await serve(API)
    before = (await served.client.get("/openapi.json")).json()
    ids = [op["operationId"] for p in before["paths"].values() for op in p.values()]
    assert len(ids) == len(set(ids))
    await served.kernel.unload("shop.CatalogPlugin")
    after = (await served.client.get("/openapi.json")).json()
    assert after["paths"] == {}
    owner = Owner("tools.system")
    owner.activate()

    async def health(data: Any, context: Any) -> Any:
        return {}

    served.http.bind(owner).add_endpoint("/system/health", "GET", health)
    assert "/system/health" in (await served.client.get("/openapi.json")).json()["paths"]
    assert served.http.openapi()["paths"].keys() == {"/system/health"}


async def test_docs_page_and_assets_are_served_locally(serve: Serve) -> None:
    """/docs is an HTML page whose every script and stylesheet the app serves itself."""
    served = await serve(API)
    page = await served.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    swagger = importlib.util.find_spec("swagger_ui_bundle") is not None
    main_script = "swagger-ui-bundle.js" if swagger else "mini.js"
    assert any(url.endswith(main_script) for url in assets)
    for url in assets:
        assert url.startswith("/"), f"{url} is not served by the app"
        response = await served.client.get(url)
        assert response.status_code == 200, url
        assert response.content


async def test_docs_can_be_turned_off(serve: Serve) -> None:
    """HTTP_DOCS=false serves neither /docs nor /openapi.json."""
    served = await serve(API, settings={"HTTP_DOCS": "false"})
    assert (await served.client.get("/docs")).status_code == 404
    assert (await served.client.get("/openapi.json")).status_code == 404
    assert "/products" in served.http.openapi()["paths"]


async def test_docs_fallback_explorer_without_swagger(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the Swagger UI package /docs serves the bundled explorer, still offline."""
    monkeypatch.setitem(sys.modules, "swagger_ui_bundle", None)  # as if not installed
    served = await serve(API, settings={"HTTP_TITLE": "Shop <API>"})
    page = await served.client.get("/docs")
    assert "Shop &lt;API&gt;" in page.text
    assert "mini.js" in page.text
    for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert (await served.client.get(url)).status_code == 200, url
